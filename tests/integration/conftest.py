from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from sharehub.config import Settings


@pytest.fixture
async def fresh_db(settings: Settings) -> AsyncIterator[str]:
    """An empty database on the session's Postgres server, dropped afterwards."""
    assert settings.database_url
    name = f"mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = settings.database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()

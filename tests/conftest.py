"""Shared fixtures: the real services, started once per test session.

One embedded stack (Postgres, NATS JetStream, Redis, Ray) lives in a temporary directory on free
ports, so two `make test` runs on one machine never collide. `DATABASE_URL` etc. point the suite at
real services instead (each session then works in its own fresh database)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import build_app
from sharehub.config import Settings, load_settings
from sharehub.devstack import DevStack, ServiceUrls
from sharehub.platform import Platform, open_platform
from sharehub.security.keys import generate_key
from storage.migrate import migrate


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    # Short path under /tmp: Ray's Unix sockets live below it.
    root = Path(tempfile.mkdtemp(prefix="shr-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def services(tmp_root: Path) -> Iterator[ServiceUrls]:
    stack = DevStack(
        tmp_root / "stack",
        durable=False,
        database_url=os.environ.get("DATABASE_URL"),
        nats_url=os.environ.get("NATS_URL"),
        redis_url=os.environ.get("REDIS_URL"),
        ray_address=os.environ.get("RAY_ADDRESS"),
        # Mail always goes to the local sink (an SMTP emulator) so tests can read what was sent.
        ray_dashboard=False,
    )
    urls = stack.start()
    try:
        if os.environ.get("DATABASE_URL"):
            urls = replace(urls, database_url=_fresh_database(urls.database_url))
        yield urls
    finally:
        stack.stop()


def _fresh_database(server_url: str) -> str:
    import asyncio

    name = f"sharehub_test_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def mail_dir(tmp_root: Path, services: ServiceUrls) -> Path:
    """Where the session's SMTP sink keeps the messages it received."""
    return tmp_root / "stack" / "mail" / "messages"


@pytest.fixture(scope="session")
def settings(services: ServiceUrls, tmp_root: Path) -> Settings:
    keys_dir = tmp_root / "keys"
    generate_key(keys_dir)
    base = load_settings()
    return replace(
        base,
        env="test",
        data_dir=tmp_root / "data",
        database_url=services.database_url,
        nats_url=services.nats_url,
        redis_url=services.redis_url,
        ray_address=services.ray_address,
        smtp_url=services.smtp_url,
        jwt_keys_dir=keys_dir,
        key_publish_delay_secs=0,
        key_rescan_interval_secs=0,
        # Every test request comes from 127.0.0.1: the per-client limits get their own tests.
        api_requests_per_minute=1_000_000,
        login_failures_per_ip_per_hour=1_000_000,
        password_resets_per_ip_per_hour=1_000_000,
        cors_origins=("https://app.sharehub.test",),
    )


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> Settings:
    assert settings.database_url
    await migrate(settings.database_url, settings.migrations_dir)
    return settings


@pytest.fixture(scope="session")
async def platform(migrated: Settings) -> AsyncIterator[Platform]:
    async with open_platform(migrated) as plat:
        yield plat


@pytest.fixture(scope="session")
async def client(platform: Platform) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(platform))) as test_client:
        yield test_client


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
from dataclasses import dataclass, replace
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



# ---------------------------------------------------------------------- ml-core
# The ML tests get a market of their own: a database on the session's server seeded with a
# known demand model (sharehub/seed/demand.py), so what they measure is that market and not the
# other tests' listings. Training once and one Serve app serve every ML test.

ML_SEED = 6161
ML_USERS, ML_LISTINGS, ML_RENTALS = 200, 2000, 8000


@dataclass(frozen=True)
class MlWorld:
    settings: Settings  # the session's settings with the ML market's database
    reports: list[Any]  # ml.training.TrainingReport of the first training


@pytest.fixture(scope="session")
async def ml_world(migrated: Settings, tmp_root: Path) -> MlWorld:
    from ml.artifacts import ModelStore
    from ml.reporting import ConsoleReporter
    from ml.training import train_models
    from sharehub.seed.generate import seed_database
    from storage.db import create_pool

    assert migrated.database_url
    name = f"sharehub_ml_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(migrated.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = migrated.database_url.rpartition("/")
    world = replace(migrated, database_url=f"{base}/{name}", model_dir=tmp_root / "models")
    assert world.database_url
    await migrate(world.database_url, world.migrations_dir)
    pool = await create_pool(world.database_url, min_size=1, max_size=4)
    try:
        await seed_database(pool, seed=ML_SEED, users=ML_USERS, listings=ML_LISTINGS, rentals=ML_RENTALS)
        reports = await train_models(pool, ModelStore(world.model_dir), ConsoleReporter())
    finally:
        await pool.close()
    return MlWorld(settings=world, reports=reports)


@pytest.fixture(scope="session")
def ml_serving(ml_world: MlWorld) -> str:
    """The Ray Serve `ml` app on the session's Ray, over the ML market; yields its HTTP base URL."""
    import time

    from ray import serve

    from ml.serving import APP_NAME, deploy
    from sharehub.devstack.processes import free_port

    settings = ml_world.settings
    assert settings.database_url
    port = free_port()
    deploy(settings.database_url, str(settings.model_dir), http_port=port, reload_secs=0.5)
    deadline = time.monotonic() + 180
    while (status := serve.status().applications.get(APP_NAME)) is None or status.status != "RUNNING":
        assert status is None or status.status != "DEPLOY_FAILED", status
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    return f"http://127.0.0.1:{port}"

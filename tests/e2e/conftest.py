from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.js.errors
import pytest
import ray
import requests

from actors.relay import STREAM, ensure_stream, run_relay
from sharehub.config import Settings
from sharehub.consumers import run_consumers
from sharehub.devstack.processes import free_port, stop
from sharehub.event_consumers import all_consumers
from sharehub.platform import Platform


@pytest.fixture(scope="session")
def live_gateway(migrated: Settings, tmp_root: Path) -> Iterator[str]:
    """A real `sharehub gateway` process on a free port, joined to the session's services and Ray."""
    with gateway_process(migrated, tmp_root / "live-gateway.log") as base:
        yield base


@pytest.fixture(scope="session")
def second_gateway(migrated: Settings, tmp_root: Path) -> Iterator[str]:
    """Another gateway process beside `live_gateway` (what `sharehub run --gateways 2` runs):
    clients of the two reach each other only through NATS."""
    with gateway_process(migrated, tmp_root / "second-gateway.log") as base:
        yield base


@contextlib.contextmanager
def gateway_process(migrated: Settings, log_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": migrated.database_url or "",
        "NATS_URL": migrated.nats_url or "",
        "REDIS_URL": migrated.redis_url or "",
        "RAY_ADDRESS": migrated.ray_address or "",
        "SMTP_URL": migrated.smtp_url or "",
        "SHAREHUB_JWT_KEYS_DIR": str(migrated.jwt_keys_dir),
        "SHAREHUB_KEY_PUBLISH_DELAY_SECS": "0",
        "SHAREHUB_API_REQUESTS_PER_MINUTE": "1000000",
        "SHAREHUB_LOGIN_FAILURES_PER_IP": "1000000",
        "SHAREHUB_PASSWORD_RESETS_PER_IP": "1000000",
        "SHAREHUB_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    })
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sharehub", "gateway", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        stop(proc)


@pytest.fixture(scope="session")
async def event_pipeline(platform: Platform) -> AsyncIterator[None]:
    """What every gateway process runs in the background besides serving requests - the outbox
    relay and the domain-event consumers - for the whole session (the `client` fixture has no
    background workers). Ready once the durable consumers exist: they start at new events, so an
    event published before would be missed."""
    assert platform.nats is not None
    js = platform.nats.jetstream()
    await ensure_stream(js)
    stopping = asyncio.Event()
    consumers = all_consumers(platform)
    tasks = [asyncio.create_task(run_relay(platform.db, js, stopping)),
             asyncio.create_task(run_consumers(js, consumers, stopping))]
    deadline = time.monotonic() + 30
    for consumer in consumers:
        while True:
            try:
                await js.consumer_info(STREAM, consumer.name)
                break
            except nats.js.errors.NotFoundError:
                assert time.monotonic() < deadline, f"consumer {consumer.name} did not start"
                await asyncio.sleep(0.05)
    yield
    stopping.set()
    await asyncio.gather(*tasks)


@pytest.fixture(scope="session")
async def search_replica(migrated: Settings, tmp_root: Path, event_pipeline: None) -> AsyncIterator[str]:
    """One search replica (a Ray actor, as in production) following the session's events; the
    `client` fixture's gateway finds it by name. Yields its actor name."""
    from search.replica_actor import replica_actor

    assert migrated.database_url and migrated.nats_url
    actor = replica_actor("e2e", data_dir=tmp_root / "search", database_url=migrated.database_url,
                          nats_url=migrated.nats_url)
    await actor.start.remote()
    yield "search-e2e"
    await actor.stop.remote()
    ray.kill(actor)

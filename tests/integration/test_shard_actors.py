"""Shard actors on the session's Ray cluster, reached through the micro-batching router."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import ray

from actors.commands import Command
from actors.router import ShardRouter
from actors.shard_actor import shard_actor
from actors.sharding import ShardMap
from sharehub.config import Settings
from sharehub.devstack import ServiceUrls
from sharehub.platform import Platform
from tests.entity_kinds import CREATE_TABLE, KIND_PATHS, RAY_FLEET


@pytest.fixture(scope="module")
async def router(platform: Platform, migrated: Settings) -> AsyncIterator[ShardRouter]:
    assert migrated.database_url
    await platform.db.execute(CREATE_TABLE)
    shard_map = ShardMap(2, fleet=RAY_FLEET)
    yield ShardRouter(shard_map, database_url=migrated.database_url, kind_paths=KIND_PATHS)
    for physical in range(shard_map.physical_count):
        ray.kill(shard_actor(shard_map, physical, migrated.database_url, KIND_PATHS), no_restart=True)


def add(entity_id: str, amount: int = 1) -> Command:
    return Command(uuid.uuid4(), "counter", entity_id, "add", {"amount": amount})


async def test_commands_travel_in_batches_and_all_commit(router: ShardRouter, platform: Platform) -> None:
    entities = [uuid.uuid4().hex for _ in range(50)]
    commands = [add(entities[i % 50]) for i in range(1000)]
    results = await asyncio.gather(*(router.execute(c) for c in commands))
    assert all(r.ok for r in results)
    rows = await platform.db.fetch("SELECT value FROM test_counters WHERE id = ANY($1::text[])", entities)
    assert sorted(r["value"] for r in rows) == [20] * 50


async def test_kill_9_loses_nothing_acknowledged_and_the_shard_comes_back(
    router: ShardRouter, platform: Platform, migrated: Settings
) -> None:
    assert migrated.database_url
    entities = [uuid.uuid4().hex for _ in range(20)]
    await router.execute(add(entities[0]))  # make sure the actors are up
    victim = shard_actor(router.shard_map, 0, migrated.database_url, KIND_PATHS)
    pid = (await victim.stats.remote())["pid"]
    acknowledged: list[str] = []

    async def load() -> None:
        for i in range(400):
            entity = entities[i % len(entities)]
            result = await router.execute(add(entity))
            if result.ok:
                acknowledged.append(entity)

    async def kill_soon() -> None:
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)

    started = time.monotonic()
    await asyncio.gather(load(), kill_soon())
    # Every acknowledged increment is in Postgres (the router resent the rest after the restart).
    rows = await platform.db.fetch("SELECT id, value FROM test_counters WHERE id = ANY($1::text[])", entities)
    stored = {r["id"]: r["value"] for r in rows}
    expected = {e: acknowledged.count(e) + (1 if e == entities[0] else 0) for e in entities}
    assert stored == expected
    assert len(acknowledged) == 400, "every command eventually succeeded through retries"
    new_pid = (await victim.stats.remote())["pid"]
    assert new_pid != pid
    assert time.monotonic() - started < 60


async def test_shards_report_prometheus_metrics_through_ray(router: ShardRouter, services: ServiceUrls) -> None:
    """Ray's metrics agent exports what the shard actors record (every ~10 s)."""
    assert services.ray_metrics_url
    results = await asyncio.gather(*(router.execute(add(uuid.uuid4().hex)) for _ in range(20)))
    assert all(r.ok for r in results)
    def reported(text: str) -> bool:
        return any(line.startswith("ray_sharehub_shard_commands_total{") and 'kind="counter"' in line
                   and 'outcome="ok"' in line and f'shard="{RAY_FLEET}-shard-' in line for line in text.splitlines())

    text = ""
    async with aiohttp.ClientSession() as session:
        for _ in range(90):
            async with session.get(services.ray_metrics_url) as resp:
                text = await resp.text()
            if reported(text) and "ray_sharehub_shard_batch_seconds_bucket{" in text:
                break
            await asyncio.sleep(1)
    assert reported(text), [line for line in text.splitlines() if "sharehub_shard_commands" in line]

"""Shard actors on the session's Ray cluster, reached through the micro-batching router; they start
with the actor (timers fire after a restart with no call), wait out a Postgres that is down, and
report failing timers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import ray

from actors.commands import Command
from actors.router import ShardRouter
from actors.shard_actor import shard_actor
from actors.sharding import ShardMap, logical_shard
from actors.timer_policy import TimerPolicy
from sharehub.config import Settings
from sharehub.devstack import ServiceUrls
from sharehub.devstack.processes import free_port
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


# ---------------------------------------------------------------------- starting, and timers
# Each test starts a one-actor fleet of its own (so its timers and dead-timer counts are its own)
# and removes the actor afterwards.


@contextlib.asynccontextmanager
async def one_actor_fleet(platform: Platform, database_url: str, name: str,
                          policy: TimerPolicy | None = None) -> AsyncIterator[tuple[ShardMap, Any]]:
    await platform.db.execute(CREATE_TABLE)
    shard_map = ShardMap(1, fleet=f"{RAY_FLEET}-{name}-{uuid.uuid4().hex[:6]}")
    actor = shard_actor(shard_map, 0, database_url, KIND_PATHS, policy)
    try:
        yield shard_map, actor
    finally:
        ray.kill(actor, no_restart=True)


def command(entity_id: str, name: str, **payload: Any) -> Command:
    return Command(uuid.uuid4(), "counter", entity_id, name, payload)


async def eventually(check: Callable[[], Awaitable[bool]], secs: float = 60) -> bool:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_restarted_shard_fires_due_timers_without_being_called(
    platform: Platform, migrated: Settings
) -> None:
    """Ray brings a killed shard back (max_restarts=-1); the new incarnation must start its timer
    loop by itself: nothing is sent to it after the kill, yet the timer fires."""
    assert migrated.database_url
    async with one_actor_fleet(platform, migrated.database_url, "restart") as (shard_map, actor):
        entity = uuid.uuid4().hex
        due = datetime.now(UTC) + timedelta(seconds=4)  # after the kill: the old incarnation cannot fire it
        [result] = await actor.handle_batch.remote([command(entity, "add_later", amount=6, at=due.isoformat())])
        assert result.ok
        shard = logical_shard("counter", entity)

        async def epoch() -> int:
            value: int = await platform.db.fetchval(
                "SELECT epoch FROM shard_leases WHERE fleet = $1 AND logical_shard = $2", shard_map.fleet, shard)
            return value

        before = await epoch()
        ray.kill(actor, no_restart=False)

        async def fired() -> bool:
            value = await platform.db.fetchval("SELECT value FROM test_counters WHERE id = $1", entity)
            return bool(value == 6)

        assert await eventually(fired), "the restarted shard never fired the due timer"
        assert await epoch() > before, "a new incarnation took the shard's leases"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def postgres_proxy(port: int, target_host: str, target_port: int) -> asyncio.Server:
    """Postgres "coming back": a TCP forwarder to the session's server on a port that refused
    connections until now."""

    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    return await asyncio.start_server(forward, "127.0.0.1", port)


async def test_a_shard_started_while_postgres_is_down_answers_retry_and_recovers(
    platform: Platform, migrated: Settings
) -> None:
    assert migrated.database_url
    real = urlsplit(migrated.database_url)
    assert real.hostname and real.port
    port = free_port()
    unreachable = migrated.database_url.replace(f"{real.hostname}:{real.port}", f"127.0.0.1:{port}", 1)
    proxy: asyncio.Server | None = None
    try:
        async with one_actor_fleet(platform, unreachable, "pgdown") as (_, actor):
            entity = uuid.uuid4().hex
            [result] = await actor.handle_batch.remote([command(entity, "add", amount=1)])
            assert (result.ok, result.status, result.code, result.retryable) == (False, 503, "shard_starting", True)
            stats = await actor.stats.remote()
            assert stats["started"] is False and stats["start_failures"] >= 1
            pid = stats["pid"]

            proxy = await postgres_proxy(port, real.hostname, real.port)

            async def recovered() -> bool:
                [result] = await actor.handle_batch.remote([command(entity, "get")])
                return bool(result.ok)

            assert await eventually(recovered), "the shard never started once Postgres was reachable"
            [result] = await actor.handle_batch.remote([command(entity, "add", amount=2)])
            assert result.ok and result.reply == {"value": 2}
            stats = await actor.stats.remote()
            assert stats["started"] is True and stats["pid"] == pid  # waited in place: no crash loop
    finally:
        if proxy is not None:
            proxy.close()


async def test_a_poison_timer_ends_dead_in_shard_stats_and_prometheus(
    platform: Platform, migrated: Settings, services: ServiceUrls
) -> None:
    """The counter's `explode` timer always raises: the shard's own loop tries it `max_attempts`
    times with backoff (not on every poll), then counts it dead - in its stats and in the metrics
    Ray exports (every ~10 s)."""
    assert migrated.database_url and services.ray_metrics_url
    policy = TimerPolicy(backoff_secs=0.2, max_backoff_secs=0.4, max_attempts=3)
    async with one_actor_fleet(platform, migrated.database_url, "poison", policy) as (shard_map, actor):
        entity = uuid.uuid4().hex
        [result] = await actor.handle_batch.remote([command(entity, "explode_later", amount=1,
                                                            at=datetime.now(UTC).isoformat())])
        assert result.ok

        async def dead() -> bool:
            return bool((await actor.stats.remote())["dead_timers"] == 1)

        assert await eventually(dead)
        await asyncio.sleep(1.0)  # time for dozens of polls: a dead timer is not fired again
        stats = await actor.stats.remote()
        assert (stats["dead_timers"], stats["timer_failures"]) == (1, 3)
        row = await platform.db.fetchrow("SELECT state, attempts FROM entity_timers WHERE entity_id = $1", entity)
        assert row is not None and (row["state"], row["attempts"]) == ("dead", 3)

        def value(text: str, metric: str, *labels: str) -> float | None:
            for line in text.splitlines():
                if line.startswith(metric + "{") and all(label in line for label in labels):
                    return float(line.rsplit(" ", 1)[1])
            return None

        def exported(text: str) -> bool:
            return (value(text, "ray_sharehub_shard_dead_timers", f'fleet="{shard_map.fleet}"') == 1
                    and value(text, "ray_sharehub_shard_timer_failures_total", 'code="internal_error"',
                              f'shard="{shard_map.actor_name(0)}"') == 3)

        text = ""
        async with aiohttp.ClientSession() as session:
            for _ in range(90):
                async with session.get(services.ray_metrics_url) as resp:
                    text = await resp.text()
                if exported(text):
                    break
                await asyncio.sleep(1)
        assert exported(text), [line for line in text.splitlines() if "timer" in line]

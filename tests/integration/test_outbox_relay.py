"""Outbox -> JetStream: nothing lost across a NATS outage, nothing published twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import orjson
import pytest
from nats.js import JetStreamContext

from actors.commands import Command
from actors.relay import STREAM, UNROUTABLE, ensure_stream, publish_pending
from actors.shard import ShardHost
from actors.sharding import ShardMap
from sharehub.config import Settings
from sharehub.devstack.nats import EmbeddedNats
from sharehub.platform import Platform
from storage.db import connection, create_pool
from storage.migrate import migrate
from storage.runtime import add_outbox_events, mark_consumed
from tests.entity_kinds import COUNTER, CREATE_TABLE, LOCAL_FLEET


@pytest.fixture
async def own_outbox(fresh_db: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A database of this test's own: the session's relay publishes the session's outbox all the
    time, and would take this test's events (and this test's relay the session's)."""
    await migrate(fresh_db, settings.migrations_dir)
    pool = await create_pool(fresh_db, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A NATS of this test's own, so it can be stopped and started again."""
    server = EmbeddedNats(tmp_path / "nats", durable=True)
    server.start()
    yield server
    server.stop()


async def _versions(js: JetStreamContext, entity: str) -> list[int]:
    sub = await js.pull_subscribe(f"counter.{entity}.>", stream=STREAM)
    versions: list[int] = []
    while True:
        try:
            messages = await sub.fetch(100, timeout=1)
        except nats.errors.TimeoutError:
            break
        for message in messages:
            versions.append(orjson.loads(message.data)["version"])
            await message.ack()
    await sub.unsubscribe()
    return versions


async def _unpublished(db: asyncpg.Pool, entity: str) -> int:
    return int(await db.fetchval(
        "SELECT count(*) FROM outbox WHERE entity_id = $1 AND published_at IS NULL", entity))


async def _drain_outbox(db: asyncpg.Pool, js: JetStreamContext, entity: str, *, patience_secs: float = 60) -> None:
    """Publish until none of the entity's events is pending, retrying like the relay does while
    NATS (or JetStream, which recovers its streams from disk after a restart) is not back yet.
    "Nothing published" is not "nothing pending": when the suite's own relay (the e2e event
    pipeline, same database) holds the relay lock, a round publishes nothing."""
    deadline = time.monotonic() + patience_secs
    while await _unpublished(db, entity):
        try:
            await publish_pending(db, js)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        else:
            assert time.monotonic() < deadline, "the outbox never drained"
            await asyncio.sleep(0.01)


async def _fails_while_nats_is_down(db: asyncpg.Pool, js: JetStreamContext) -> bool:
    """A round fails as a whole (any transport error); a round that found the relay lock taken
    by the suite's own relay publishes nothing and is tried again."""
    for _ in range(100):
        try:
            await asyncio.wait_for(publish_pending(db, js), 5)
        except Exception:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_events_survive_a_nats_outage_and_are_never_duplicated(
    own_outbox: asyncpg.Pool, own_nats: EmbeddedNats
) -> None:
    await own_outbox.execute(CREATE_TABLE)
    host = ShardHost(physical=0, shard_map=ShardMap(1, fleet=LOCAL_FLEET), pool=own_outbox, kinds={"counter": COUNTER})
    await host.start()
    nc = await nats.connect(own_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await ensure_stream(js, ("counter.>",))
    entity = uuid.uuid4().hex

    async def add(n: int) -> None:
        for _ in range(n):
            assert (await host.handle(Command(uuid.uuid4(), "counter", entity, "add", {"amount": 1}))).ok

    await add(5)
    await _drain_outbox(own_outbox, js, entity)

    own_nats.stop()
    await add(5)  # committed while NATS is down: they wait in the outbox
    assert await _fails_while_nats_is_down(own_outbox, js)
    assert await _unpublished(own_outbox, entity) == 5

    own_nats.start()
    for _ in range(300):
        if nc.is_connected:
            break
        await asyncio.sleep(0.1)
    await _drain_outbox(own_outbox, js, entity)

    # A relay that crashed after publishing but before marking republishes: JetStream drops it.
    await own_outbox.execute(
        "UPDATE outbox SET published_at = NULL WHERE entity_id = $1 AND (payload->>'version')::int > 8", entity)
    await _drain_outbox(own_outbox, js, entity)

    assert await _versions(js, entity) == list(range(1, 11))
    await nc.close()


async def test_an_event_no_stream_takes_is_set_aside_and_holds_nothing_back(
    own_outbox: asyncpg.Pool, own_nats: EmbeddedNats
) -> None:
    """Before: the relay's oldest batch failed as a whole on an event whose subject no stream
    captures, every round, so not one event behind it was ever published."""
    await own_outbox.execute(CREATE_TABLE)
    host = ShardHost(physical=0, shard_map=ShardMap(1, fleet=LOCAL_FLEET), pool=own_outbox, kinds={"counter": COUNTER})
    await host.start()
    nc = await nats.connect(own_nats.url)
    js = nc.jetstream()
    await ensure_stream(js, ("counter.>",))
    stray, entity = uuid.uuid4(), uuid.uuid4().hex
    async with connection(own_outbox) as conn:  # older than the counter's events: first in line
        await add_outbox_events(conn, [(stray, f"nowhere.{entity}.happened", "nowhere", entity, "happened", {})])
    for _ in range(3):
        assert (await host.handle(Command(uuid.uuid4(), "counter", entity, "add", {"amount": 1}))).ok
    before = UNROUTABLE._value.get()
    await _drain_outbox(own_outbox, js, entity)
    assert await _versions(js, entity) == [1, 2, 3]
    row = await own_outbox.fetchrow("SELECT published_at, unroutable FROM outbox WHERE id = $1", stray)
    assert row is not None and row["unroutable"] and row["published_at"] is not None
    assert UNROUTABLE._value.get() == before + 1
    await nc.close()


async def test_consumers_apply_each_event_once(platform: Platform) -> None:
    event_id = uuid.uuid4()
    async with connection(platform.db) as conn:
        assert await mark_consumed(conn, "search-indexer", event_id) is True
        assert await mark_consumed(conn, "search-indexer", event_id) is False
        assert await mark_consumed(conn, "notifications", event_id) is True

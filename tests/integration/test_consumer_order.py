"""Consumers apply each entity's events in seq order (sharehub/consumers.py), against real
Postgres and JetStream: redeliveries, early events, gaps of events the consumer does not want or
can never receive, failures given up, reset channels, two processes racing on one entity.

The events are real outbox rows (numbered by `add_outbox_events`) about a test entity kind; the
test consumer's handler writes what it applied, in its transaction, to a table of its own."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from actors.relay import STREAM, ensure_stream
from sharehub.config import Settings
from sharehub.consumers import (
    MAX_FAILURES,
    PATIENCE_SECS,
    Consumer,
    Outcome,
    apply_in_order,
    count_failure,
    run_consumer,
    subject_patterns,
)
from sharehub.platform import Platform
from storage import consumer_positions as positions
from storage.db import create_pool, transaction
from storage.runtime import add_outbox_events

KIND = "ordertest"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
# No key: an event applied twice shows as two rows.
_APPLIED = """CREATE TABLE IF NOT EXISTS order_test_applied (
    consumer   text NOT NULL,
    entity_id  text NOT NULL,
    seq        bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


@pytest.fixture(scope="module")
async def prepared(platform: Platform) -> None:
    await platform.db.execute(_APPLIED)
    # The stream carries the test kind, so a relay of the session that publishes a test row succeeds.
    assert platform.nats is not None
    js = platform.nats.jetstream()
    await ensure_stream(js)
    await ensure_stream(js, (f"{KIND}.>",))


def _consumer(platform: Platform, *, slow: float = 0.0) -> Consumer:
    """A consumer of `ordertest.*.stepped` (not `.noise`) with a name of its own; an event whose
    data says `fail` raises, as a handler with a bug or a dependency down would."""
    name = f"order-{uuid.uuid4().hex[:8]}"

    async def handle(event: dict[str, Any], conn: asyncpg.Connection | None = None) -> None:
        assert conn is not None
        if event["data"].get("fail"):
            raise RuntimeError("the handler fails")
        await asyncio.sleep(slow)
        await conn.execute("INSERT INTO order_test_applied (consumer, entity_id, seq) VALUES ($1, $2, $3)",
                           name, event["entity_id"], event["seq"])

    return Consumer(name, (f"{KIND}.*.stepped",), handle, platform.db)


async def _events(platform: Platform, entity: str, types: list[str], *, published: bool = True,
                  data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Write events about `entity` to the outbox as an entity's commit does; their payloads."""
    rows = []
    for event_type in types:
        event_id = uuid.uuid4()
        payload = {"event_id": str(event_id), "type": event_type, "kind": KIND, "entity_id": entity, "version": 1,
                   "occurred_at": datetime.now(UTC).isoformat(), "data": data or {}}
        rows.append((event_id, f"{KIND}.{entity}.{event_type}", KIND, entity, event_type, payload))
    async with transaction(platform.db, "test_order_events") as conn:
        await add_outbox_events(conn, rows)
        if published:
            await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])",
                               [row[0] for row in rows])
    stored = await platform.db.fetch("SELECT payload FROM outbox WHERE id = ANY($1::uuid[]) ORDER BY seq",
                                     [row[0] for row in rows])
    return [row["payload"] for row in stored]


async def _applied(platform: Platform, consumer: Consumer, entity: str) -> list[int]:
    rows = await platform.db.fetch(
        "SELECT seq FROM order_test_applied WHERE consumer = $1 AND entity_id = $2 ORDER BY applied_at",
        consumer.name, entity)
    return [row["seq"] for row in rows]


async def _position(platform: Platform, consumer: Consumer, entity: str) -> int:
    return int(await platform.db.fetchval(
        "SELECT seq FROM consumer_positions WHERE consumer = $1 AND entity_kind = $2 AND entity_id = $3",
        consumer.name, KIND, entity))


pytestmark = pytest.mark.usefixtures("prepared")


async def test_a_redelivered_event_is_applied_once(platform: Platform) -> None:
    consumer, entity = _consumer(platform), uuid.uuid4().hex
    [first] = await _events(platform, entity, ["stepped"])
    assert await apply_in_order(consumer, first, LONG_AGO) is Outcome.APPLIED
    assert await apply_in_order(consumer, first, LONG_AGO) is Outcome.DUPLICATE
    assert await _applied(platform, consumer, entity) == [1]
    assert await _position(platform, consumer, entity) == 1


async def test_an_early_event_waits_for_the_one_before_it(platform: Platform) -> None:
    consumer, entity = _consumer(platform), uuid.uuid4().hex
    first, second, third = await _events(platform, entity, ["stepped", "stepped", "stepped"])
    assert await apply_in_order(consumer, third, LONG_AGO) is Outcome.EARLY
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.EARLY
    assert await _applied(platform, consumer, entity) == []
    for event in (first, third, second, third):  # the third is still early until the second is in
        await apply_in_order(consumer, event, LONG_AGO)
    assert await _applied(platform, consumer, entity) == [1, 2, 3]


async def test_events_the_consumer_does_not_subscribe_to_leave_no_gap(platform: Platform) -> None:
    consumer, entity = _consumer(platform), uuid.uuid4().hex
    events = await _events(platform, entity, ["stepped", "noise", "noise", "stepped"])
    assert await apply_in_order(consumer, events[0], LONG_AGO) is Outcome.APPLIED
    assert await apply_in_order(consumer, events[3], LONG_AGO) is Outcome.APPLIED
    assert await _applied(platform, consumer, entity) == [1, 4]


async def test_an_event_not_published_yet_is_waited_for(platform: Platform) -> None:
    consumer, entity = _consumer(platform), uuid.uuid4().hex
    [first] = await _events(platform, entity, ["stepped"], published=False)
    [second] = await _events(platform, entity, ["stepped"])
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.EARLY
    assert await apply_in_order(consumer, first, LONG_AGO) is Outcome.APPLIED
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.APPLIED
    assert await _applied(platform, consumer, entity) == [1, 2]


async def test_events_the_consumer_can_never_receive_are_not_waited_for(platform: Platform) -> None:
    consumer = _consumer(platform)
    # Published before the consumer's horizon (a new consumer starts at new events).
    before, entity = uuid.uuid4().hex, uuid.uuid4().hex
    old, new = await _events(platform, before, ["stepped", "stepped"])
    await platform.db.execute("UPDATE outbox SET published_at = now() - interval '1 hour' WHERE id = $1",
                              uuid.UUID(old["event_id"]))
    horizon = datetime.now(UTC) - timedelta(minutes=1)
    assert await apply_in_order(consumer, new, horizon) is Outcome.APPLIED
    # Purged from the outbox.
    purged, kept = await _events(platform, entity, ["stepped", "stepped"])
    await platform.db.execute("DELETE FROM outbox WHERE id = $1", uuid.UUID(purged["event_id"]))
    assert await apply_in_order(consumer, kept, LONG_AGO) is Outcome.APPLIED
    assert (await _applied(platform, consumer, before), await _applied(platform, consumer, entity)) == ([2], [2])
    # The pre-horizon event, delivered late after all, is behind the position: nothing twice.
    assert await apply_in_order(consumer, old, horizon) is Outcome.DUPLICATE


async def test_a_missing_event_is_waited_for_only_so_long(platform: Platform) -> None:
    consumer, entity = _consumer(platform), uuid.uuid4().hex
    _, second = await _events(platform, entity, ["stepped", "stepped"])
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.EARLY
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.EARLY

    async def waited(secs: float) -> None:
        await platform.db.execute(
            """UPDATE consumer_positions SET waiting_since = now() - make_interval(secs => $3)
                WHERE consumer = $1 AND entity_id = $2""", consumer.name, entity, secs)

    await waited(5)  # not on its way after all: asked about less often
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.STALLED
    await waited(PATIENCE_SECS + 1)
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.APPLIED
    assert await _applied(platform, consumer, entity) == [2]


async def test_a_failing_event_holds_the_later_ones_until_it_is_given_up(platform: Platform) -> None:
    consumer, entity = _consumer(platform), uuid.uuid4().hex
    [poison] = await _events(platform, entity, ["stepped"], data={"fail": True})
    [after] = await _events(platform, entity, ["stepped"])
    for attempt in range(1, MAX_FAILURES):
        with pytest.raises(RuntimeError):
            await apply_in_order(consumer, poison, LONG_AGO)
        assert await count_failure(consumer, poison, delivered=attempt * 3) == attempt
        # Even past the patience: a failing event is not "missing", it is being retried.
        await platform.db.execute(
            "UPDATE consumer_positions SET waiting_since = now() - interval '1 day' WHERE consumer = $1",
            consumer.name)
        assert await apply_in_order(consumer, after, LONG_AGO) is Outcome.STALLED
    with pytest.raises(RuntimeError):
        await apply_in_order(consumer, poison, LONG_AGO)
    assert await count_failure(consumer, poison, delivered=1) == MAX_FAILURES  # given up
    assert await _position(platform, consumer, entity) == 1
    assert await apply_in_order(consumer, after, LONG_AGO) is Outcome.APPLIED
    assert await apply_in_order(consumer, poison, LONG_AGO) is Outcome.DUPLICATE
    assert await _applied(platform, consumer, entity) == [2]


async def test_a_reset_channel_starts_its_position_again(platform: Platform) -> None:
    consumer, entity = _consumer(platform), uuid.uuid4().hex
    old = await _events(platform, entity, ["stepped", "stepped", "stepped"])
    for event in old:
        await apply_in_order(consumer, event, LONG_AGO)
    # A reset: the history goes, the head row with it; the next events are 1, 2 ... of a new epoch.
    await platform.db.execute("DELETE FROM outbox WHERE entity_kind = $1 AND entity_id = $2", KIND, entity)
    await platform.db.execute("DELETE FROM channel_heads WHERE entity_kind = $1 AND entity_id = $2", KIND, entity)
    first, second = await _events(platform, entity, ["stepped", "stepped"])
    assert first["epoch"] != old[0]["epoch"] and first["seq"] == 1
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.EARLY
    assert await apply_in_order(consumer, first, LONG_AGO) is Outcome.APPLIED
    assert await apply_in_order(consumer, second, LONG_AGO) is Outcome.APPLIED
    # An event of the old history delivered this late is applied as it comes (it cannot be
    # ordered against the new one) and does not drag the position back.
    assert await apply_in_order(consumer, old[2], LONG_AGO) is Outcome.APPLIED
    assert await _applied(platform, consumer, entity) == [1, 2, 3, 1, 2, 3]
    assert await _position(platform, consumer, entity) == 2


async def test_two_processes_with_one_entitys_events_take_turns(platform: Platform, migrated: Settings) -> None:
    """Two pools, as two gateway processes have: the second event arrives while the first is
    being applied (slowly) elsewhere, waits for it on the position row and then goes."""
    assert migrated.database_url
    other = await create_pool(migrated.database_url, min_size=1, max_size=2)
    try:
        here = _consumer(platform, slow=0.5)
        there = Consumer(here.name, here.subjects, here.handle, other)
        entity = uuid.uuid4().hex
        first, second = await _events(platform, entity, ["stepped", "stepped"])
        slow_first = asyncio.create_task(apply_in_order(here, first, LONG_AGO))
        await asyncio.sleep(0.1)  # the first holds the position now
        assert await apply_in_order(there, second, LONG_AGO) is Outcome.APPLIED
        assert await slow_first is Outcome.APPLIED
        assert await _applied(platform, here, entity) == [1, 2]
    finally:
        await other.close()


async def test_jetstream_delivery_out_of_order_is_applied_in_order(platform: Platform) -> None:
    """The consumer loop on the real stream: events published in reverse come back early until
    their predecessors are in; the durable consumer has no server-side delivery limit, also when
    it existed before with one."""
    assert platform.nats is not None
    js = platform.nats.jetstream()
    consumer = _consumer(platform)
    await js.add_consumer(STREAM, ConsumerConfig(
        name=consumer.name, durable_name=consumer.name, filter_subjects=list(consumer.subjects),
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, max_deliver=20))
    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(js, consumer, stop))
    try:
        deadline = time.monotonic() + 10
        while ((await js.consumer_info(STREAM, consumer.name)).config.max_deliver != -1
               or not await platform.db.fetchval("SELECT 1 FROM consumer_horizons WHERE consumer = $1", consumer.name)):
            assert time.monotonic() < deadline, "the consumer did not start"
            await asyncio.sleep(0.05)
        entities = [uuid.uuid4().hex for _ in range(3)]
        events = [event for entity in entities for event in await _events(platform, entity, ["stepped"] * 4)]
        for event in sorted(events, key=lambda e: -e["seq"]):  # 4, 4, 4, 3, 3, 3, ...
            await js.publish(f"{KIND}.{event['entity_id']}.stepped", orjson.dumps(event))
        deadline = time.monotonic() + 30
        while [await _applied(platform, consumer, e) for e in entities] != [[1, 2, 3, 4]] * 3:
            assert time.monotonic() < deadline, [await _applied(platform, consumer, e) for e in entities]
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await js.delete_consumer(STREAM, consumer.name)


def test_filter_subjects_become_anchored_patterns() -> None:
    patterns = [re.compile(p) for p in subject_patterns(("rental.*.state_changed", "chat.>"))]
    matches = {s: any(p.match(s) for p in patterns) for s in (
        "rental.1.state_changed", "rental.1.2.state_changed", "rental.1.state_changed_x", "xrental.1.state_changed",
        "chat.1.read", "chat.1", "chat", "chatx.1.read")}
    assert matches == {"rental.1.state_changed": True, "rental.1.2.state_changed": False,
                       "rental.1.state_changed_x": False, "xrental.1.state_changed": False,
                       "chat.1.read": True, "chat.1": True, "chat": False, "chatx.1.read": False}


async def test_idle_positions_are_purged_once_their_history_is(platform: Platform) -> None:
    consumer, kept, gone = _consumer(platform), uuid.uuid4().hex, uuid.uuid4().hex
    for entity in (kept, gone):
        [event] = await _events(platform, entity, ["stepped"])
        await apply_in_order(consumer, event, LONG_AGO)
    await platform.db.execute("UPDATE consumer_positions SET updated_at = now() - interval '30 days' "
                              "WHERE consumer = $1", consumer.name)
    await platform.db.execute("DELETE FROM outbox WHERE entity_kind = $1 AND entity_id = $2", KIND, gone)
    assert await positions.purge_idle(platform.db) >= 1
    left = await platform.db.fetch("SELECT entity_id FROM consumer_positions WHERE consumer = $1", consumer.name)
    assert [row["entity_id"] for row in left] == [kept]

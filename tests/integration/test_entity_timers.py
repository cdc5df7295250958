"""Durable timers: stored with the decision that set them, fired once by the owning shard,
surviving a change of owner; a timer whose command keeps failing backs off and ends dead
instead of re-firing in a loop and holding back the timers due after it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from actors.commands import Command
from actors.entity import EntityKind
from actors.shard import ShardHost
from actors.sharding import ShardMap, logical_shard
from actors.timer_policy import TimerPolicy
from sharehub.platform import Platform
from storage import runtime as store
from storage.db import connection
from tests.entity_kinds import COUNTER, CREATE_TABLE, FIXED_COUNTER, LOCAL_FLEET, OFFLINE


async def _host(platform: Platform) -> ShardHost:
    await platform.db.execute(CREATE_TABLE)
    host = ShardHost(physical=0, shard_map=ShardMap(1, fleet=LOCAL_FLEET), pool=platform.db,
                     kinds={"counter": COUNTER})
    await host.start()
    return host


def _cmd(entity: str, name: str, **payload: object) -> Command:
    return Command(uuid.uuid4(), "counter", entity, name, dict(payload))


async def _value(host: ShardHost, entity: str) -> int:
    value: int = (await host.handle(_cmd(entity, "get"))).reply["value"]
    return value


async def _fire_all(host: ShardHost) -> int:
    total = 0
    while fired := await host.fire_due_timers():
        total += fired
    return total


async def test_a_due_timer_fires_once(platform: Platform) -> None:
    host = await _host(platform)
    entity = uuid.uuid4().hex
    due = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert (await host.handle(_cmd(entity, "add_later", amount=5, at=due))).ok
    await _fire_all(host)
    assert await _value(host, entity) == 5
    assert await _fire_all(host) == 0
    assert await platform.db.fetchval("SELECT count(*) FROM entity_timers WHERE entity_id = $1", entity) == 0


async def test_a_future_timer_waits_and_survives_a_new_owner(platform: Platform) -> None:
    host = await _host(platform)
    entity = uuid.uuid4().hex
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await host.handle(_cmd(entity, "add_later", amount=3, at=soon.isoformat()))
    await _fire_all(host)
    assert await _value(host, entity) == 0  # not yet
    successor = await _host(platform)  # the old owner is gone (fenced); the timer is in Postgres
    await platform.db.execute("UPDATE entity_timers SET fire_at = now() WHERE entity_id = $1", entity)
    await _fire_all(successor)
    assert await _value(successor, entity) == 3


async def test_a_second_firing_returns_the_first_result(platform: Platform) -> None:
    host = await _host(platform)
    entity = uuid.uuid4().hex
    await host.handle(_cmd(entity, "add_later", amount=7, at=datetime.now(UTC).isoformat()))
    row = await platform.db.fetchrow("SELECT command_id, payload FROM entity_timers WHERE entity_id = $1", entity)
    assert row is not None
    fire = Command(row["command_id"], "counter", entity, "timer:pending_add", row["payload"],
                   actor_roles=frozenset({"system"}))
    first = await host.handle(fire)
    second = await host.handle(fire)  # e.g. two hosts raced, or a retry after a crash
    assert first == second and first.reply == {"value": 7}
    assert await _value(host, entity) == 7


async def test_a_cancelled_timer_never_fires(platform: Platform) -> None:
    host = await _host(platform)
    entity = uuid.uuid4().hex
    await host.handle(_cmd(entity, "add_later", amount=9, at=datetime.now(UTC).isoformat()))
    await host.handle(_cmd(entity, "cancel_later"))
    await _fire_all(host)
    assert await _value(host, entity) == 0


async def test_users_cannot_fire_timers_by_name(platform: Platform) -> None:
    host = await _host(platform)
    entity = uuid.uuid4().hex
    forged = Command(uuid.uuid4(), "counter", entity, "timer:pending_add", {"amount": 100},
                     actor_id=str(uuid.uuid4()), actor_roles=frozenset({"user"}))
    result = await host.handle(forged)
    assert (result.ok, result.status, result.code) == (False, 403, "forbidden")
    assert await _value(host, entity) == 0


# ---------------------------------------------------------------------- failing timers
# Each test below runs in a fleet of its own: its failing and dead timers never reach the other
# tests' hosts, and a host's dead-timer count is that test's alone.


async def _fleet_host(platform: Platform, policy: TimerPolicy, *, fleet: str | None = None,
                      kinds: dict[str, EntityKind] | None = None) -> ShardHost:
    await platform.db.execute(CREATE_TABLE)
    host = ShardHost(physical=0, shard_map=ShardMap(1, fleet=fleet or f"{LOCAL_FLEET}-{uuid.uuid4().hex[:8]}"),
                     pool=platform.db, kinds=kinds or {"counter": COUNTER}, timer_policy=policy)
    await host.start()
    return host


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


async def _timer(platform: Platform, kind: str, entity: str) -> asyncpg.Record:
    row = await platform.db.fetchrow(
        """SELECT *, extract(epoch FROM retry_at - last_failed_at)::float8 AS backoff
           FROM entity_timers WHERE entity_kind = $1 AND entity_id = $2""", kind, entity)
    assert row is not None
    return row


async def _until_retry_is_due(platform: Platform, entity: str) -> None:
    wait: float = await platform.db.fetchval(
        "SELECT greatest(0, extract(epoch FROM retry_at - now()))::float8 FROM entity_timers WHERE entity_id = $1",
        entity)
    await asyncio.sleep(wait + 0.02)


async def test_a_failing_timer_backs_off_exponentially_and_ends_dead(platform: Platform) -> None:
    host = await _fleet_host(platform, TimerPolicy(backoff_secs=0.1, max_backoff_secs=10, max_attempts=3))
    entity = uuid.uuid4().hex
    assert (await host.handle(_cmd(entity, "explode_later", amount=1, at=_ago(1)))).ok
    backoffs: list[Any] = []
    for attempt in (1, 2):
        assert await host.fire_due_timers() == 1
        # Not due again at once: the next poll does not fire the same failure again.
        assert await host.fire_due_timers() == 0
        row = await _timer(platform, "counter", entity)
        assert (row["state"], row["attempts"], row["last_error_code"]) == ("live", attempt, "internal_error")
        backoffs.append(round(row["backoff"], 3))
        await _until_retry_is_due(platform, entity)
    assert backoffs == [0.1, 0.2]
    assert await host.fire_due_timers() == 1  # the third and last attempt
    row = await _timer(platform, "counter", entity)
    assert (row["state"], row["attempts"]) == ("dead", 3) and row["dead_at"] is not None
    assert host.stats()["dead_timers"] == 1 and host.stats()["timer_failures"] == 3
    # Dead means never fired again, whatever its times say.
    await platform.db.execute("UPDATE entity_timers SET fire_at = now() - interval '1 hour', retry_at = NULL "
                              "WHERE entity_id = $1", entity)
    assert await host.fire_due_timers() == 0
    assert await _value(host, entity) == 0


async def test_poison_timers_due_first_do_not_hold_back_a_good_one(platform: Platform) -> None:
    """150 failing timers due before a good one: a poll takes 100 timers in due order, so before
    backoff the same 100 failures filled every poll and the good timer never fired."""
    host = await _fleet_host(platform, TimerPolicy(backoff_secs=60, max_backoff_secs=600, max_attempts=5))
    poison = [uuid.uuid4().hex for _ in range(150)]
    answers = await host.handle_batch([_cmd(e, "explode_later", amount=1, at=_ago(60)) for e in poison])
    assert all(a.ok for a in answers)
    good = uuid.uuid4().hex
    assert (await host.handle(_cmd(good, "add_later", amount=5, at=_ago(30)))).ok
    polls = [await host.fire_due_timers() for _ in range(3)]
    assert polls == [100, 51, 0]
    assert await _value(host, good) == 5
    attempts = await platform.db.fetch("SELECT attempts FROM entity_timers WHERE entity_id = ANY($1::text[])", poison)
    assert sorted(r["attempts"] for r in attempts) == [1] * 150


async def test_an_outage_delays_a_timer_without_spending_attempts(platform: Platform) -> None:
    """A 503 is not the timer's fault: with one attempt allowed, a counted outage would kill it."""
    host = await _fleet_host(platform, TimerPolicy(backoff_secs=0.1, max_attempts=1, outage_delay_secs=0.3),
                             kinds={"offline": OFFLINE})
    entity = uuid.uuid4().hex
    async with connection(platform.db) as conn:
        await store.set_timers(conn, host.shard_map.fleet,
                               [(logical_shard("offline", entity), "offline", entity, "ping", datetime.now(UTC), {})])
    assert await host.fire_due_timers() == 1
    assert await host.fire_due_timers() == 0
    row = await _timer(platform, "offline", entity)
    assert (row["state"], row["attempts"], round(row["backoff"], 3)) == ("live", 0, 0.3)
    assert row["last_error_code"] is not None
    await _until_retry_is_due(platform, entity)
    assert await host.fire_due_timers() == 1
    assert (await _timer(platform, "offline", entity))["attempts"] == 0
    assert host.stats()["dead_timers"] == 0


async def test_a_dead_timer_set_again_by_its_entity_starts_afresh(platform: Platform) -> None:
    policy = TimerPolicy(backoff_secs=0.1, max_attempts=1)
    host = await _fleet_host(platform, policy)
    entity = uuid.uuid4().hex
    await host.handle(_cmd(entity, "explode_later", amount=4, at=_ago(1)))
    assert await host.fire_due_timers() == 1
    dead = await _timer(platform, "counter", entity)
    assert dead["state"] == "dead"
    await host.handle(_cmd(entity, "explode_later", amount=4, at=_ago(1)))
    row = await _timer(platform, "counter", entity)
    assert (row["state"], row["attempts"], row["retry_at"], row["last_error_code"], row["dead_at"]) == (
        "live", 0, None, None, None)
    assert row["command_id"] != dead["command_id"]
    # The deploy with the fix takes the shard over and fires it.
    fixed = await _fleet_host(platform, policy, fleet=host.shard_map.fleet, kinds={"counter": FIXED_COUNTER})
    assert await fixed.fire_due_timers() == 1
    assert await _value(fixed, entity) == 4

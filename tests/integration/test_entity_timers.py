"""Durable timers: stored with the decision that set them, fired once by the owning shard,
surviving a change of owner."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from actors.commands import Command
from actors.shard import ShardHost
from actors.sharding import ShardMap
from sharehub.platform import Platform
from tests.entity_kinds import COUNTER, CREATE_TABLE, LOCAL_FLEET


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

"""The shard host against real Postgres: one command at a time per entity, effectively-once
commands, events in the same transaction, and fencing of a zombie owner."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from actors.commands import Command
from actors.shard import ShardHost
from actors.sharding import ShardMap, logical_shard
from sharehub.platform import Platform
from tests.entity_kinds import COUNTER, CREATE_TABLE, LOCAL_FLEET


@pytest.fixture
async def host(platform: Platform) -> AsyncIterator[ShardHost]:
    await platform.db.execute(CREATE_TABLE)
    shard_host = _new_host(platform)
    await shard_host.start()
    yield shard_host


def _new_host(platform: Platform) -> ShardHost:
    return ShardHost(physical=0, shard_map=ShardMap(1, fleet=LOCAL_FLEET), pool=platform.db,
                     kinds={"counter": COUNTER})


def add(entity_id: str, amount: int = 1, command_id: uuid.UUID | None = None) -> Command:
    return Command(command_id or uuid.uuid4(), "counter", entity_id, "add", {"amount": amount})


async def test_concurrent_commands_on_one_entity_apply_one_at_a_time(host: ShardHost, platform: Platform) -> None:
    entity = uuid.uuid4().hex
    results = await host.handle_batch([add(entity) for _ in range(200)])
    assert all(r.ok for r in results)
    assert sorted(r.reply["value"] for r in results) == list(range(1, 201))
    row = await platform.db.fetchrow("SELECT value, version FROM test_counters WHERE id = $1", entity)
    assert row is not None and (row["value"], row["version"]) == (200, 200)
    events = await platform.db.fetch(
        "SELECT payload FROM outbox WHERE entity_id = $1 ORDER BY (payload->>'version')::int", entity)
    assert [e["payload"]["version"] for e in events] == list(range(1, 201))
    assert events[0]["payload"]["type"] == "added"


async def test_a_retried_command_returns_its_first_result_and_applies_once(host: ShardHost,
                                                                           platform: Platform) -> None:
    entity, command_id = uuid.uuid4().hex, uuid.uuid4()
    first = await host.handle(add(entity, 5, command_id))
    await host.handle(add(entity, 1))
    again = await host.handle(add(entity, 5, command_id))
    assert first == again and first.reply == {"value": 5}
    # A fresh owner (memory gone, as after a crash) finds the stored result too.
    fresh = _new_host(platform)
    await fresh.start()
    assert await fresh.handle(add(entity, 5, command_id)) == first
    assert (await fresh.handle(Command(uuid.uuid4(), "counter", entity, "get"))).reply == {"value": 6}


async def test_rejections_store_nothing(host: ShardHost, platform: Platform) -> None:
    entity = uuid.uuid4().hex
    rejected = await host.handle(add(entity, COUNTER.ceiling + 1))
    assert (rejected.ok, rejected.status, rejected.code) == (False, 409, "ceiling_reached")
    assert await platform.db.fetchval("SELECT count(*) FROM outbox WHERE entity_id = $1", entity) == 0
    assert await platform.db.fetchval("SELECT count(*) FROM test_counters WHERE id = $1", entity) == 0


async def test_a_zombie_owner_can_no_longer_write(host: ShardHost, platform: Platform) -> None:
    entity = uuid.uuid4().hex
    assert (await host.handle(add(entity, 1))).ok
    # A second owner takes the same shards (as a restarted actor would): new epochs.
    successor = _new_host(platform)
    await successor.start()
    shard = logical_shard("counter", entity)
    assert successor.epochs[shard] > host.epochs[shard]
    # The zombie still has the entity in memory and tries to write: refused, and it lets go.
    refused = await host.handle(add(entity, 100))
    assert (refused.ok, refused.code, refused.retryable) == (False, "shard_moved", True)
    assert shard not in host.epochs
    assert (await host.handle(add(entity, 100))).code == "shard_moved"
    assert (await successor.handle(add(entity, 1))).reply == {"value": 2}
    assert await platform.db.fetchval("SELECT value FROM test_counters WHERE id = $1", entity) == 2


async def test_takeover_waits_for_an_inflight_write(host: ShardHost, platform: Platform) -> None:
    """Fencing is linearizable: a write racing a takeover either commits first or is refused."""
    entity = uuid.uuid4().hex
    successor = _new_host(platform)
    writes = [host.handle(add(entity, 1)) for _ in range(20)]
    results, _ = await asyncio.gather(asyncio.gather(*writes), successor.start())
    committed = sum(r.ok for r in results)
    assert all(r.ok or r.code == "shard_moved" for r in results)
    assert await platform.db.fetchval("SELECT coalesce(max(value), 0) FROM test_counters WHERE id = $1",
                                      entity) == committed


async def test_idle_entities_are_passivated_and_reload(host: ShardHost) -> None:
    entity = uuid.uuid4().hex
    await host.handle(add(entity, 3))
    host.idle_secs = 0
    assert host.passivate_idle() >= 1
    assert (await host.handle(Command(uuid.uuid4(), "counter", entity, "get"))).reply == {"value": 3}


async def test_live_entities_are_capped(host: ShardHost) -> None:
    host.max_live = 10
    await host.handle_batch([add(uuid.uuid4().hex) for _ in range(50)])
    assert host.stats()["live_entities"] <= 10


async def _transactions_of(platform: Platform, commands: list[Command]) -> int:
    """How many transactions stored these commands: rows written by one transaction share its
    `now()` (the transaction's start time) as `created_at`."""
    return int(await platform.db.fetchval(
        "SELECT count(DISTINCT created_at) FROM processed_commands WHERE command_id = ANY($1::uuid[])",
        [c.command_id for c in commands]))


async def test_a_batch_commits_in_one_transaction_and_keeps_each_entitys_order(
    host: ShardHost, platform: Platform
) -> None:
    entities = [uuid.uuid4().hex for _ in range(10)]
    batch = [add(entities[i % 10]) for i in range(100)]
    results = await host.handle_batch(batch)
    assert all(r.ok for r in results)
    # Per entity, the replies count up in batch order.
    for entity in entities:
        assert [r.reply["value"] for c, r in zip(batch, results, strict=True) if c.entity_id == entity] == list(
            range(1, 11))
    assert await _transactions_of(platform, batch) == 1


async def test_a_hot_entity_takes_a_whole_batch_in_one_commit(host: ShardHost, platform: Platform) -> None:
    hot = uuid.uuid4().hex
    batch = [add(hot) for _ in range(100)]
    results = await host.handle_batch(batch)
    assert [r.reply["value"] for r in results] == list(range(1, 101))
    assert await _transactions_of(platform, batch) == 1
    events = await platform.db.fetchval("SELECT count(*) FROM outbox WHERE entity_id = $1", hot)
    assert events == 100


async def test_a_chain_whose_commit_fails_reruns_one_by_one(host: ShardHost, platform: Platform) -> None:
    """A value the database refuses in the middle of a chain: the commands before and after it
    still commit (one by one, from the stored state), and only the bad one fails."""
    hot = uuid.uuid4().hex
    batch = [add(hot), Command(uuid.uuid4(), "counter", hot, "set_raw", {"value": 2**40}), add(hot)]
    results = await host.handle_batch(batch)
    assert results[0].ok and results[0].reply == {"value": 1}
    assert (results[1].ok, results[1].code) == (False, "internal_error")
    assert results[2].ok and results[2].reply == {"value": 2}
    assert await platform.db.fetchval("SELECT value FROM test_counters WHERE id = $1", hot) == 2


async def test_a_group_with_a_retry_or_a_rejection_still_answers_each_command(host: ShardHost) -> None:
    first, second, third = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    done = add(first, 2)
    assert (await host.handle(done)).ok
    results = await host.handle_batch([done, add(second, 1), add(third, COUNTER.ceiling + 1)])
    assert results[0].reply == {"value": 2}  # the retry got its first answer, not a second increment
    assert results[1].ok and results[1].reply == {"value": 1}
    assert (results[2].ok, results[2].code) == (False, "ceiling_reached")
    assert (await host.handle(Command(uuid.uuid4(), "counter", first, "get"))).reply == {"value": 2}


async def test_a_value_the_database_refuses_fails_alone(host: ShardHost, platform: Platform) -> None:
    good_a, bad, good_b = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    results = await host.handle_batch([
        add(good_a), Command(uuid.uuid4(), "counter", bad, "set_raw", {"value": 2**40}), add(good_b),
    ])
    assert results[0].ok and results[2].ok
    assert (results[1].ok, results[1].status, results[1].code, results[1].retryable) == (
        False, 500, "internal_error", False)
    assert await platform.db.fetchval("SELECT count(*) FROM test_counters WHERE id = $1", bad) == 0
    assert (await host.handle(add(bad))).reply == {"value": 1}  # the entity reloads cleanly

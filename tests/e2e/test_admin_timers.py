"""The timer dead letter over HTTP: admins list timers whose command failed every attempt and re-arm
them once the cause is fixed; nobody else may.

The failing timers come from the test counter kind (`tests/entity_kinds.py`), on in-process shard
hosts of a fleet of their own, so the platform's "entities" fleet is never touched."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from actors.commands import Command
from actors.entity import EntityKind
from actors.shard import ShardHost
from actors.sharding import ShardMap
from actors.timer_policy import TimerPolicy
from sharehub.platform import Platform
from tests.entity_kinds import COUNTER, CREATE_TABLE, FIXED_COUNTER, LOCAL_FLEET
from tests.helpers import make_user_with_roles, register_and_login

# Two attempts, 50 ms apart: the timer is dead within a test's first second.
FAST = TimerPolicy(backoff_secs=0.05, max_backoff_secs=0.05, max_attempts=2)


async def _host(platform: Platform, fleet: str, kind: EntityKind) -> ShardHost:
    host = ShardHost(physical=0, shard_map=ShardMap(1, fleet=fleet), pool=platform.db, kinds={"counter": kind},
                     timer_policy=FAST)
    await host.start()
    return host


def _cmd(entity: str, name: str, **payload: object) -> Command:
    return Command(uuid.uuid4(), "counter", entity, name, dict(payload))


async def _dead_timer(platform: Platform, fleet: str) -> tuple[ShardHost, str]:
    """A counter whose `explode` timer failed both attempts (the kind has a bug)."""
    await platform.db.execute(CREATE_TABLE)
    host = await _host(platform, fleet, COUNTER)
    entity = uuid.uuid4().hex
    at = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert (await host.handle(_cmd(entity, "explode_later", amount=7, at=at))).ok
    for _ in range(200):
        await host.fire_due_timers()
        if await platform.db.fetchval("SELECT state FROM entity_timers WHERE entity_id = $1", entity) == "dead":
            return host, entity
        await asyncio.sleep(0.02)
    raise AssertionError("the timer never died")


async def _listed(client: TestClient[Any, Any], auth: dict[str, str], query: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v1/admin/timers?{query}", headers=auth)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["limit"] == 100 and body["offset"] == 0
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_admins_see_a_dead_timer_and_re_arm_it_after_the_fix(
    client: TestClient[Any, Any], platform: Platform
) -> None:
    fleet = f"{LOCAL_FLEET}-admin-{uuid.uuid4().hex[:8]}"
    host, entity = await _dead_timer(platform, fleet)
    assert host.stats()["dead_timers"] == 1
    admin = await make_user_with_roles(client, platform, {"admin"})

    dead = [t for t in await _listed(client, admin.auth, "state=dead&kind=counter&limit=100")
            if t["entity_id"] == entity]
    assert len(dead) == 1
    timer = dead[0]
    assert (timer["fleet"], timer["name"], timer["state"], timer["attempts"]) == (fleet, "explode", "dead", 2)
    assert timer["last_error"]["code"] == "internal_error" and timer["dead_at"] and timer["fire_at"]
    assert timer["payload"] == {"amount": 7}
    assert not [t for t in await _listed(client, admin.auth, "state=live&kind=counter&limit=100")
                if t["entity_id"] == entity]

    # The deploy with the fix takes the shard over: a dead timer stays dead until re-armed.
    fixed = await _host(platform, fleet, FIXED_COUNTER)
    assert await fixed.fire_due_timers() == 0
    resp = await client.post(f"/api/v1/admin/timers/{timer['id']}/retry", headers=admin.auth)
    assert resp.status == 200, await resp.text()
    rearmed = await resp.json()
    assert (rearmed["id"], rearmed["state"], rearmed["attempts"], rearmed["dead_at"], rearmed["retry_at"]) == (
        timer["id"], "live", 0, None, None)
    assert await fixed.fire_due_timers() == 1
    value = await platform.db.fetchval("SELECT value FROM test_counters WHERE id = $1", entity)
    assert value == 7
    assert await fixed.refresh_dead_timers() == 0

    # It fired: nothing is left to re-arm.
    resp = await client.post(f"/api/v1/admin/timers/{timer['id']}/retry", headers=admin.auth)
    assert resp.status == 404 and (await resp.json())["code"] == "timer_not_found"


async def test_timer_admin_refuses_non_admins_and_anonymous_callers(
    client: TestClient[Any, Any], platform: Platform
) -> None:
    _, entity = await _dead_timer(platform, f"{LOCAL_FLEET}-admin-{uuid.uuid4().hex[:8]}")
    timer_id = await platform.db.fetchval("SELECT command_id FROM entity_timers WHERE entity_id = $1", entity)
    user = await register_and_login(client)
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    for headers, status, code in ((user.auth, 403, "forbidden"), (moderator.auth, 403, "forbidden"),
                                  ({}, 401, "authentication_required")):
        listed = await client.get("/api/v1/admin/timers", headers=headers)
        retried = await client.post(f"/api/v1/admin/timers/{timer_id}/retry", headers=headers)
        for resp in (listed, retried):
            assert resp.status == status, await resp.text()
            assert resp.content_type == "application/problem+json"
            assert (await resp.json())["code"] == code
    state = await platform.db.fetchval("SELECT state FROM entity_timers WHERE entity_id = $1", entity)
    assert state == "dead"


async def test_timer_admin_answers_bad_input_with_422(client: TestClient[Any, Any], platform: Platform) -> None:
    admin = await make_user_with_roles(client, platform, {"admin"})
    for query in ("state=asleep", "limit=0", "limit=101", "offset=-1", "kind=", "page=2"):
        resp = await client.get(f"/api/v1/admin/timers?{query}", headers=admin.auth)
        assert resp.status == 422, query
        assert (await resp.json())["code"] == "validation_failed"
    resp = await client.post("/api/v1/admin/timers/not-a-uuid/retry", headers=admin.auth)
    assert resp.status == 422 and (await resp.json())["code"] == "validation_failed"
    resp = await client.post(f"/api/v1/admin/timers/{uuid.uuid4()}/retry", headers=admin.auth)
    assert resp.status == 404 and (await resp.json())["code"] == "timer_not_found"

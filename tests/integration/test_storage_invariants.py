"""What the database itself refuses, whoever writes: an overlapping booking of one unit (the
exclusion constraint, written to with raw SQL past the actors); commands claiming staff roles
their user does not hold (checked by the shard host against `users`); and the purge of command
results and consumed-event marks past the retry horizon."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from asyncpg import Range

from actors.commands import Command
from actors.entity import load_kinds
from actors.kinds import ENTITY_KINDS
from actors.periods import local_day, now_utc
from actors.shard import ShardHost
from actors.sharding import ShardMap
from sharehub.platform import Platform
from storage.runtime import purge_processed
from tests.helpers import make_user_with_roles, published_listing, register_and_login


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


async def _copy_rental(conn: asyncpg.Connection, rental_id: uuid.UUID) -> uuid.UUID:
    """A second rentals row like an existing one (the bookings row needs a rental to belong to)."""
    new_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO rentals (id, listing_id, renter_id, owner_id, status, rental_unit, quantity, start_at, end_at,
                                held_until, unit_numbers, quote, total, expires_at, details, version)
           SELECT $2, listing_id, renter_id, owner_id, status, rental_unit, quantity, start_at, end_at, held_until,
                  unit_numbers, quote, total, expires_at, details, version FROM rentals WHERE id = $1""",
        rental_id, new_id)
    return new_id


async def test_a_raw_overlapping_booking_hits_the_exclusion_constraint(
        client: TestClient[Any, Any], platform: Platform) -> None:
    _, listing = await published_listing(client, platform, instant_book=True, quantity=2)
    renter = await register_and_login(client)
    resp = await client.post("/api/v1/rentals", headers=renter.auth,
                             json={"listing_id": listing["id"], "start": _day(20), "end": _day(22)})
    assert resp.status == 201
    rental_id = uuid.UUID((await resp.json())["id"])
    [held] = await platform.db.fetch("SELECT listing_id, unit_no, period FROM bookings WHERE rental_id = $1",
                                     rental_id)
    overlapping = Range(held["period"].lower + timedelta(days=1), held["period"].upper + timedelta(days=1))
    conn: asyncpg.Connection = await asyncpg.connect(platform.settings.database_url)
    try:
        # The same period on the other unit is fine: the constraint is about one unit.
        async with conn.transaction():
            other = await _copy_rental(conn, rental_id)
            await conn.execute("INSERT INTO bookings (rental_id, listing_id, unit_no, period) VALUES ($1, $2, $3, $4)",
                               other, held["listing_id"], 3 - held["unit_no"], overlapping)
        # An overlapping period on the same unit is refused at commit (the constraint is deferred).
        with pytest.raises(asyncpg.exceptions.ExclusionViolationError) as refused:
            async with conn.transaction():
                intruder = await _copy_rental(conn, rental_id)
                await conn.execute(
                    "INSERT INTO bookings (rental_id, listing_id, unit_no, period) VALUES ($1, $2, $3, $4)",
                    intruder, held["listing_id"], held["unit_no"], overlapping)
        assert refused.value.sqlstate == "23P01" and refused.value.constraint_name == "bookings_no_overlap"
        assert await conn.fetchval("SELECT count(*) FROM rentals WHERE id = $1", intruder) == 0
    finally:
        await conn.close()


async def test_a_shard_refuses_staff_roles_the_caller_does_not_hold(
        client: TestClient[Any, Any], platform: Platform) -> None:
    owner = await register_and_login(client)
    listing = await (await client.post("/api/v1/listings", headers=owner.auth,
                                       json={"title": "Палатка", "description": "Четырёхместная палатка.",
                                             "category_id": "tents", "city": "Москва", "lat": 55.7, "lon": 37.6,
                                             "rental_unit": "day", "price_per_unit": 50_000,
                                             "cancellation_policy": "flexible"})).json()
    assert (await client.post(f"/api/v1/listings/{listing['id']}/submit", headers=owner.auth)).status == 200
    impostor = await register_and_login(client)
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    host = ShardHost(physical=0, shard_map=ShardMap(1, fleet=f"roles-{uuid.uuid4().hex[:6]}"), pool=platform.db,
                     kinds=load_kinds(ENTITY_KINDS))
    await host.start()

    def approve(actor: str) -> Command:
        return Command(uuid.uuid4(), "listing", listing["id"], "approve", actor_id=actor,
                       actor_roles=frozenset({"user", "moderator"}))

    [forged] = await host.handle_batch([approve(impostor.user_id)])
    assert (forged.ok, forged.status, forged.code) == (False, 403, "forbidden")
    assert await platform.db.fetchval("SELECT status FROM listings WHERE id = $1",
                                      uuid.UUID(listing["id"])) == "pending_review"
    [real] = await host.handle_batch([approve(moderator.user_id)])
    assert real.ok, real


async def test_old_command_results_and_consumed_marks_are_purged(platform: Platform) -> None:
    old, recent = uuid.uuid4(), uuid.uuid4()
    await platform.db.executemany(
        """INSERT INTO processed_commands (command_id, entity_kind, entity_id, result, created_at)
           VALUES ($1, 'listing', 'x', '{}'::jsonb, now() - make_interval(secs => $2))""",
        [(old, 8 * 86400.0), (recent, 60.0)])
    await platform.db.executemany(
        """INSERT INTO consumed_events (consumer, event_id, consumed_at)
           VALUES ('purge-test', $1, now() - make_interval(secs => $2))""",
        [(old, 8 * 86400.0), (recent, 60.0)])
    assert await purge_processed(platform.db, older_than_secs=7 * 86400.0) >= 2
    assert await platform.db.fetchval("SELECT array_agg(command_id) FROM processed_commands "
                                      "WHERE command_id = ANY($1::uuid[])", [old, recent]) == [recent]
    assert await platform.db.fetchval("SELECT array_agg(event_id) FROM consumed_events WHERE consumer = 'purge-test'"
                                      ) == [recent]

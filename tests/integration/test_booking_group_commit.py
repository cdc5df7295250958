"""Booking decisions of many listings share one group commit, and a listing changed behind the
shard's back (its version moved) sends the group down the one-by-one path without losing or
double-storing anything."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from actors.commands import Command
from actors.entity import load_kinds
from actors.kinds import ENTITY_KINDS
from actors.periods import local_day, now_utc
from actors.shard import ShardHost
from actors.sharding import ShardMap
from sharehub.platform import Platform
from tests.helpers import published_listing, register_and_login


def _booking(listing_id: str, renter: str, day_offset: int) -> Command:
    day = (local_day(now_utc()) + timedelta(days=day_offset)).isoformat()
    return Command(uuid.uuid4(), "listing", listing_id, "request_booking",
                   {"rental_id": str(uuid.uuid4()), "start": day, "end": day, "quantity": 1}, actor_id=renter)


async def test_bookings_of_many_listings_commit_together(client: TestClient[Any, Any], platform: Platform) -> None:
    listings = [(await published_listing(client, platform, instant_book=True))[1]["id"] for _ in range(3)]
    renter = (await register_and_login(client)).user_id
    host = ShardHost(physical=0, shard_map=ShardMap(1, fleet="group-test"), pool=platform.db,
                     kinds=load_kinds(ENTITY_KINDS))
    await host.start()

    batch = [_booking(listing_id, renter, 10 + i) for listing_id in listings for i in range(3)]
    results = await host.handle_batch(batch)
    assert all(r.ok for r in results), results
    created_at = await platform.db.fetch(
        "SELECT DISTINCT created_at FROM processed_commands WHERE command_id = ANY($1::uuid[])",
        [c.command_id for c in batch])
    assert len(created_at) == 1  # one transaction for nine bookings on three listings
    versions = await platform.db.fetch("SELECT version FROM listings WHERE id = ANY($1::uuid[])",
                                       [uuid.UUID(i) for i in listings])
    assert sorted(r["version"] for r in versions) == [6, 6, 6]  # create, submit, approve, then 3 bookings

    # Someone moves one listing's version: the group cannot commit as a whole, the commands run
    # one by one from what Postgres holds, and every booking is stored exactly once.
    await platform.db.execute("UPDATE listings SET version = version + 100 WHERE id = $1", uuid.UUID(listings[0]))
    again = [_booking(listing_id, renter, 20) for listing_id in listings]
    results = await host.handle_batch(again)
    assert all(r.ok for r in results), results
    stored = await platform.db.fetchval(
        "SELECT count(*) FROM rentals WHERE listing_id = ANY($1::uuid[])", [uuid.UUID(i) for i in listings])
    assert stored == 12

"""`sharehub seed`: realistic, deterministic, idempotent demo data."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from actors import rental_machine as machine
from sharehub.platform import Platform
from sharehub.seed.generate import seed_database
from storage.db import create_pool
from storage.migrate import migrate

RELEASED = {"declined", "cancelled", "expired"}
# The timer each open rental waits on (none for accepted: the handover is up to the people).
TIMER_OF_STATUS = {"requested": "expire", "active": "overdue", "returned": "complete"}


def _seeded(seed: int) -> str:
    return f"%.s{seed}@seed.sharehub.local"


async def test_seed_loads_realistic_listings_once(platform: Platform) -> None:
    report = await seed_database(platform.db, users=30, listings=300, seed=4242)
    assert (report.users, report.listings, report.rentals, report.skipped) == (30, 300, 0, False)
    again = await seed_database(platform.db, users=30, listings=300, seed=4242)
    assert again.skipped
    rows = await platform.db.fetch(
        """SELECT l.title, l.city, l.price_per_unit, l.rental_unit, l.status, l.category_id, u.roles
           FROM listings l JOIN users u ON u.id = l.owner_id
           WHERE u.email LIKE '%.s4242@seed.sharehub.local'""")
    assert len(rows) == 300
    assert sum(r["status"] == "published" for r in rows) > 200
    assert {r["city"] for r in rows} >= {"Москва", "Санкт-Петербург"}
    assert all(r["price_per_unit"] > 0 and r["price_per_unit"] % 100 == 0 for r in rows)  # whole roubles
    assert any(r["rental_unit"] == "hour" for r in rows)
    assert all("owner" in r["roles"] for r in rows if r["status"] == "published")
    assert any("Перфоратор" in r["title"] or "Палатка" in r["title"] for r in rows)


async def test_seed_writes_rental_histories_like_the_listing_entity(platform: Platform) -> None:
    now = datetime.now(UTC)
    report = await seed_database(platform.db, users=60, listings=600, rentals=1500, seed=5151, now=now)
    assert (report.users, report.listings, report.rentals) == (60, 600, 1500)
    rentals = await platform.db.fetch(
        """SELECT r.*, l.status AS listing_status, l.owner_id AS listing_owner, l.rental_unit AS listing_unit,
                  l.quantity AS listing_quantity, l.min_units, l.max_units, l.buffer_hours,
                  l.cancellation_policy AS listing_policy, l.published_at
           FROM rentals r JOIN listings l ON l.id = r.listing_id JOIN users u ON u.id = r.renter_id
           WHERE u.email LIKE $1""", _seeded(5151))
    assert len(rentals) == 1500
    statuses = Counter(r["status"] for r in rentals)
    # Mostly finished rentals, and every state for the demo.
    assert set(statuses) == machine.STATES
    assert statuses["completed"] > len(rentals) / 2
    for r in rentals:
        assert r["listing_status"] == "published" and r["owner_id"] == r["listing_owner"] != r["renter_id"]
        assert r["rental_unit"] == r["listing_unit"]
        assert r["total"] == r["quote"]["total"] > 0
        assert r["quote"]["cancellation_policy"] == r["listing_policy"] and r["quote"]["cancellation_tiers"]
        assert r["min_units"] <= r["quote"]["units"] <= (r["max_units"] or r["quote"]["units"])
        units = r["unit_numbers"]
        assert len(units) == len(set(units)) == r["quantity"] <= r["listing_quantity"]
        assert all(1 <= unit <= r["listing_quantity"] for unit in units)
        assert r["published_at"] < r["created_at"] <= r["updated_at"] <= now
        held_through = r["end_at"] + timedelta(hours=r["buffer_hours"])
        assert r["held_until"] == held_through or (  # or given back early by the return
            "returned_at" in r["details"] and r["held_until"] < held_through)
    await _check_transitions(platform.db, rentals, now)
    await _check_bookings_and_timers(platform.db, rentals)


async def _check_transitions(db: asyncpg.Pool, rentals: list[asyncpg.Record], now: datetime) -> None:
    """Every history is a path through the rental machine, by the right people, in order."""
    rows = await db.fetch("SELECT * FROM rental_transitions WHERE rental_id = ANY($1::uuid[]) ORDER BY rental_id, seq",
                          [r["id"] for r in rentals])
    history: dict[Any, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        history[row["rental_id"]].append(row)
    for r in rentals:
        steps = history[r["id"]]
        assert [s["seq"] for s in steps] == list(range(1, r["version"] + 1))
        first = steps[0]
        assert (first["command"], first["from_status"], first["actor_role"], first["actor_id"]) == (
            "request", None, "renter", r["renter_id"])
        assert first["to_status"] in {"requested", "accepted"} and first["at"] == r["created_at"]
        assert steps[-1]["to_status"] == r["status"] and steps[-1]["at"] == r["updated_at"]
        for before, step in itertools.pairwise(steps):
            assert step["from_status"] == before["to_status"] and before["at"] <= step["at"] <= now
            assert _allowed(step["command"], step["from_status"], step["to_status"], step["actor_role"]), step
            expected_actor = {"renter": r["renter_id"], "owner": r["owner_id"], "system": None}[step["actor_role"]]
            assert step["actor_id"] == expected_actor
        commands = [s["command"] for s in steps]
        if r["status"] == "completed":
            assert {"handover", "confirm_handover", "return", "complete"} <= set(commands)
            assert r["details"]["completed_at"] and "late_fee" in r["details"]
        if r["status"] == "cancelled":
            assert r["details"]["cancellation"]["by"] in {"renter", "owner"}


def _allowed(command: str, source: str, target: str, role: str) -> bool:
    return any(t.command == command and source in t.sources and (t.target or source) == target and role in t.who
               for t in machine.TRANSITIONS)


async def _check_bookings_and_timers(db: asyncpg.Pool, rentals: list[asyncpg.Record]) -> None:
    ids = [r["id"] for r in rentals]
    # The exclusion constraint refuses overlaps anyway; this says so in plain SQL.
    overlaps = await db.fetchval(
        """SELECT count(*) FROM bookings a JOIN bookings b
             ON a.listing_id = b.listing_id AND a.unit_no = b.unit_no AND a.rental_id < b.rental_id
                AND a.period && b.period""")
    assert overlaps == 0
    bookings: defaultdict[Any, list[asyncpg.Record]] = defaultdict(list)
    for b in await db.fetch("SELECT * FROM bookings WHERE rental_id = ANY($1::uuid[])", ids):
        bookings[b["rental_id"]].append(b)
    timers: defaultdict[str, list[asyncpg.Record]] = defaultdict(list)
    for t in await db.fetch("SELECT * FROM entity_timers WHERE payload->>'rental_id' = ANY($1::text[])",
                            [str(i) for i in ids]):
        timers[t["payload"]["rental_id"]].append(t)
    for r in rentals:
        held = bookings[r["id"]]
        if r["status"] in RELEASED:
            assert held == []
        else:
            assert sorted(b["unit_no"] for b in held) == sorted(r["unit_numbers"])
            assert all((b["listing_id"], b["period"].lower, b["period"].upper) == (r["listing_id"], r["start_at"],
                                                                                  r["held_until"]) for b in held)
        waiting = timers[str(r["id"])]
        expected = TIMER_OF_STATUS.get(r["status"])
        assert [t["name"] for t in waiting] == ([f"rental.{expected}#{r['id']}"] if expected else [])
        assert all((t["entity_kind"], t["entity_id"]) == ("listing", str(r["listing_id"])) for t in waiting)
        if r["status"] == "requested":
            assert waiting[0]["fire_at"] == r["expires_at"]


async def test_seeded_renters_hold_no_more_dates_than_the_gateway_allows(platform: Platform) -> None:
    """Few renters, many rentals, a few listings: without the caps the busiest renters would hold
    far more rentals that have not started than anyone could book through the API."""
    now = datetime.now(UTC)
    await seed_database(platform.db, users=8, listings=40, rentals=1200, seed=6262, now=now)
    unstarted = await platform.db.fetch(
        """SELECT r.renter_id, r.listing_id FROM rentals r JOIN users u ON u.id = r.renter_id
           WHERE u.email LIKE $1 AND r.status IN ('requested', 'accepted') AND r.start_at > $2""",
        _seeded(6262), now)
    assert len(unstarted) >= 10
    assert max(Counter(r["renter_id"] for r in unstarted).values()) <= 10
    assert max(Counter((r["renter_id"], r["listing_id"]) for r in unstarted).values()) <= 2


async def test_cheaper_listings_get_more_bookings(platform: Platform) -> None:
    await seed_database(platform.db, users=80, listings=800, rentals=2500, seed=6161)
    rows = await platform.db.fetch(
        """SELECT l.category_id, l.rental_unit, l.price_per_unit, count(r.id) AS rentals
           FROM listings l JOIN users u ON u.id = l.owner_id LEFT JOIN rentals r ON r.listing_id = l.id
           WHERE u.email LIKE $1 AND l.status = 'published' GROUP BY l.id""", _seeded(6161))
    by_group: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        by_group[(row["category_id"], row["rental_unit"])].append(row["price_per_unit"])
    medians = {group: statistics.median(prices) for group, prices in by_group.items()}
    cheap = [r["rentals"] for r in rows if r["price_per_unit"] < medians[(r["category_id"], r["rental_unit"])]]
    dear = [r["rentals"] for r in rows if r["price_per_unit"] > medians[(r["category_id"], r["rental_unit"])]]
    assert statistics.mean(cheap) > 1.5 * statistics.mean(dear)


async def test_a_seed_loaded_before_rentals_gets_them_once(platform: Platform) -> None:
    first = await seed_database(platform.db, users=10, listings=60, seed=8181)
    assert first.rentals == 0
    later = await seed_database(platform.db, users=10, listings=60, rentals=40, seed=8181)
    assert (later.users, later.listings, later.rentals, later.skipped) == (0, 0, 40, False)
    assert (await seed_database(platform.db, users=10, listings=60, rentals=40, seed=8181)).skipped
    count = await platform.db.fetchval(
        "SELECT count(*) FROM rentals r JOIN users u ON u.id = r.renter_id WHERE u.email LIKE $1", _seeded(8181))
    assert count == 40


async def test_the_same_seed_gives_the_same_data(platform: Platform, fresh_db: str) -> None:
    now = datetime.now(UTC)  # the same `now` for both loads (dates are relative to it)
    await seed_database(platform.db, users=12, listings=60, rentals=150, seed=777, now=now)
    queries = [
        """SELECT l.id, l.title, l.price_per_unit, l.created_at FROM listings l JOIN users u ON u.id = l.owner_id
           WHERE u.email LIKE '%.s777@seed.sharehub.local' ORDER BY l.id""",
        """SELECT r.id, r.listing_id, r.renter_id, r.status, r.start_at, r.end_at, r.held_until, r.unit_numbers,
                  r.quote, r.total, r.expires_at, r.details, r.version, r.created_at, r.updated_at
           FROM rentals r JOIN users u ON u.id = r.renter_id
           WHERE u.email LIKE '%.s777@seed.sharehub.local' ORDER BY r.id""",
        """SELECT t.* FROM rental_transitions t JOIN rentals r ON r.id = t.rental_id JOIN users u ON u.id = r.renter_id
           WHERE u.email LIKE '%.s777@seed.sharehub.local' ORDER BY t.rental_id, t.seq""",
        """SELECT b.rental_id, b.unit_no, b.period FROM bookings b JOIN rentals r ON r.id = b.rental_id
           JOIN users u ON u.id = r.renter_id WHERE u.email LIKE '%.s777@seed.sharehub.local'
           ORDER BY b.rental_id, b.unit_no""",
        """SELECT t.* FROM entity_timers t JOIN rentals r ON r.id::text = t.payload->>'rental_id'
           JOIN users u ON u.id = r.renter_id WHERE u.email LIKE '%.s777@seed.sharehub.local' ORDER BY t.name""",
    ]
    first = [[tuple(r) for r in await platform.db.fetch(query)] for query in queries]
    # Load the same seed into a fresh database: identical users, listings and rental histories.
    await migrate(fresh_db, platform.settings.migrations_dir)
    other = await create_pool(fresh_db, max_size=2)
    try:
        await seed_database(other, users=12, listings=60, rentals=150, seed=777, now=now)
        assert [[tuple(r) for r in await other.fetch(query)] for query in queries] == first
    finally:
        await other.close()
    listings, rentals, transitions, _, _ = first
    assert len(listings) == 60 and len(rentals) == 150 and len(transitions) > 300

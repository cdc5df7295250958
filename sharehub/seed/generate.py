"""Generate and bulk-load demo users, listings and rental histories (COPY, thousands of rows per
second).

Deterministic: the same `seed` gives the same people, ids, listings and rentals (rental dates are
relative to `now`; see sharehub/seed/rentals.py). Seeded accounts share one password (hashed
once), printed by `sharehub seed`. Listings and rentals are written straight to their tables (new
ids, so no entity actor holds them yet); actors load them on first use like any other. Seed while
the platform is stopped (as `make run` does, before it starts the shard actors)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from sharehub.progress import Progress
from sharehub.security.passwords import hash_password
from sharehub.seed import seeded_uuid
from sharehub.seed.catalog import (
    CITIES,
    DESCRIPTION_CLOSERS,
    DESCRIPTION_OPENERS,
    FIRST_NAMES,
    ITEMS,
    LAST_INITIALS,
    ItemTemplate,
)
from sharehub.seed.rentals import seed_rentals
from storage.db import connection
from storage.listings import ENTITY_COLUMNS

# Demo accounts only (printed by `sharehub seed`); never a real user's password.
SEED_PASSWORD = "Аренда без забот 2026"  # noqa: S105
_CHUNK = 5000
_STATUSES = (("published", 0.85), ("paused", 0.05), ("pending_review", 0.04), ("draft", 0.04), ("archived", 0.02))


@dataclass(frozen=True)
class SeedReport:
    users: int
    listings: int
    rentals: int
    skipped: bool


def _email(seed: int, index: int) -> str:
    return f"user{index}.s{seed}@seed.sharehub.local"


def _emails_like(seed: int) -> str:
    """The LIKE pattern of every email of the seed's users."""
    return f"user%.s{seed}@seed.sharehub.local"


def _city(rng: random.Random) -> tuple[str, float, float]:
    name, lat, lon, _ = rng.choices(CITIES, weights=[c[3] for c in CITIES])[0]
    # Spread around the centre (~10 km) so distance search has something to sort.
    return name, round(lat + rng.uniform(-0.09, 0.09), 6), round(lon + rng.uniform(-0.15, 0.15), 6)


def _listing_row(rng: random.Random, owner: tuple[uuid.UUID, str], now: datetime) -> dict[str, Any]:
    item: ItemTemplate = rng.choice(ITEMS)
    name = rng.choice(item.names)
    city, lat, lon = _city(rng)
    hourly = rng.random() < item.hourly_share
    daily_rub = rng.randint(*item.price_rub) // 50 * 50
    price_rub = max(50, daily_rub // 6 // 10 * 10) if hourly else daily_rub
    features = rng.sample(item.features, k=min(2, len(item.features)))
    description = " ".join([
        rng.choice(DESCRIPTION_OPENERS).format(name=name),
        f"{features[0].capitalize()}, {features[-1]}." if features else "",
        rng.choice(DESCRIPTION_CLOSERS),
    ])
    status = rng.choices([s for s, _ in _STATUSES], weights=[w for _, w in _STATUSES])[0]
    created = now - timedelta(days=rng.uniform(1, 365))
    discounts = [{"min_units": 3, "percent": 10}, {"min_units": 7, "percent": 20}] if rng.random() < 0.4 else []
    return {
        "id": seeded_uuid(rng), "owner_id": owner[0], "status": status, "title": name, "description": description,
        "photos": [], "category_id": item.category_id, "attributes": {}, "city": city, "lat": lat, "lon": lon,
        "rental_unit": "hour" if hourly else "day", "price_per_unit": price_rub * 100, "discounts": discounts,
        "price_overrides": [], "deposit": int(daily_rub * item.deposit_factor) // 100 * 10000,
        "quantity": rng.choices([1, 2, 3, 5], weights=[85, 9, 4, 2])[0], "min_units": 1, "max_units": None,
        "min_notice_hours": rng.choice([0, 2, 12, 24]), "buffer_hours": rng.choice([0, 0, 2, 12]),
        "instant_book": rng.random() < 0.3, "cancellation_policy": rng.choice(["flexible", "moderate", "strict"]),
        "blocked_periods": [], "pending_revision": None, "rejection_reason": None,
        "published_at": created + timedelta(hours=6) if status in ("published", "paused", "archived") else None,
        "created_at": created,
    }


def _users(rng: random.Random, seed: int, count: int) -> Iterator[tuple[Any, ...]]:
    for index in range(count):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_INITIALS)}."
        city = _city(rng)[0]
        yield (seeded_uuid(rng), _email(seed, index), name, city)


async def seed_database(pool: asyncpg.Pool, *, users: int, listings: int, seed: int, rentals: int = 0,
                        now: datetime | None = None) -> SeedReport:
    """Load the seed's users, listings and `rentals` rentals, once. A seed loaded before rental
    histories existed gets its rentals on the next call (`make run` on an older data directory)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    now = now or datetime.now(UTC)
    async with connection(pool) as conn:
        if await conn.fetchval("SELECT 1 FROM users WHERE email = $1", _email(seed, 0)):
            has_rentals = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM rentals r JOIN users u ON u.id = r.renter_id WHERE u.email LIKE $1)",
                _emails_like(seed))
            if rentals <= 0 or has_rentals:
                return SeedReport(0, 0, 0, skipped=True)
            async with conn.transaction():
                added = await seed_rentals(conn, users_like=_emails_like(seed), count=rentals, seed=seed, now=now)
            return SeedReport(0, 0, added, skipped=False)
        password_hash = hash_password(SEED_PASSWORD)
        people = list(_users(rng, seed, users))
        owners = [(uid, name) for uid, _, name, _ in people]
        async with conn.transaction():
            with Progress("users", len(people)) as progress:
                for start in range(0, len(people), _CHUNK):
                    chunk = people[start:start + _CHUNK]
                    await conn.copy_records_to_table(
                        "users", columns=["id", "email", "display_name", "city", "password_hash"],
                        records=[(uid, email, name, city, password_hash) for uid, email, name, city in chunk],
                    )
                    progress.advance(len(chunk))
            columns = [*ENTITY_COLUMNS, "created_at", "updated_at", "version"]
            listing_owners: set[uuid.UUID] = set()
            with Progress("listings", listings) as progress:
                for start in range(0, listings, _CHUNK):
                    rows = [_listing_row(rng, rng.choice(owners), now) for _ in range(min(_CHUNK, listings - start))]
                    listing_owners.update(r["owner_id"] for r in rows if r["published_at"] is not None)
                    await conn.copy_records_to_table(
                        "listings", columns=columns,
                        records=[(*[r[c] for c in ENTITY_COLUMNS], r["created_at"], r["created_at"], 1) for r in rows],
                    )
                    progress.advance(len(rows))
            await conn.execute(
                """UPDATE users SET roles = array_append(roles, 'owner')
                   WHERE id = ANY($1::uuid[]) AND NOT 'owner' = ANY (roles)""",
                list(listing_owners),
            )
            added = 0
            if rentals > 0:
                added = await seed_rentals(conn, users_like=_emails_like(seed), count=rentals, seed=seed, now=now)
    return SeedReport(users=users, listings=listings, rentals=added, skipped=False)

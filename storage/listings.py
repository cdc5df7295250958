"""Reads of listings, categories and cancellation policies (writes go through the listing
entity in actors/listing.py, which owns the row)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

_LISTING_COLUMNS = (
    "id, owner_id, status, title, description, photos, category_id, attributes, city, lat, lon, rental_unit, "
    "price_per_unit, discounts, price_overrides, deposit, quantity, min_units, max_units, min_notice_hours, "
    "buffer_hours, instant_book, cancellation_policy, blocked_periods, pending_revision, rejection_reason, "
    "version, created_at, updated_at, published_at"
)


# The columns the listing entity owns (actors/listing.py), in a fixed order.
ENTITY_COLUMNS = (
    "id", "owner_id", "status", "title", "description", "photos", "category_id", "attributes", "city", "lat",
    "lon", "rental_unit", "price_per_unit", "discounts", "price_overrides", "deposit", "quantity", "min_units",
    "max_units", "min_notice_hours", "buffer_hours", "instant_book", "cancellation_policy", "blocked_periods",
    "pending_revision", "rejection_reason", "published_at",
)
_ENTITY_LIST = ", ".join(ENTITY_COLUMNS)
_N = len(ENTITY_COLUMNS)
_INSERT = (
    f"INSERT INTO listings ({_ENTITY_LIST}, version) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, _N + 1))}, ${_N + 1}) ON CONFLICT (id) DO NOTHING"
)
_UPDATE = (
    "UPDATE listings SET "
    + ", ".join(f"{name} = ${i}" for i, name in enumerate(ENTITY_COLUMNS, start=1) if i > 2)
    + f", version = ${_N + 2}, updated_at = now() WHERE id = $1 AND owner_id = $2 AND version = ${_N + 1}"
)


async def load_row(conn: asyncpg.Connection, listing_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_ENTITY_LIST}, version FROM listings WHERE id = $1", listing_id)
    return dict(row) if row else None


async def write_row(conn: asyncpg.Connection, row: dict[str, Any], expected_version: int, new_version: int) -> bool:
    """Insert (expected_version 0) or update if the stored version is still `expected_version`;
    the row then has `new_version` (several versions at once when a chain of changes is saved)."""
    values = [row[name] for name in ENTITY_COLUMNS]
    if expected_version == 0:
        return bool(await conn.execute(_INSERT, *values, new_version) == "INSERT 0 1")
    return bool(await conn.execute(_UPDATE, *values, expected_version, new_version) == "UPDATE 1")


async def bump_versions(conn: asyncpg.Connection, bumps: dict[str, tuple[int, int]]) -> bool:
    """{listing id: (expected version, new version)} in one statement; False unless every listing
    still had its expected version (then the caller's transaction must not commit)."""
    ids = list(bumps)
    updated = await conn.fetch(
        """UPDATE listings AS l SET version = v.new, updated_at = now()
           FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS v(id, old, new)
           WHERE l.id = v.id AND l.version = v.old
           RETURNING l.id""",
        [uuid.UUID(i) for i in ids], [bumps[i][0] for i in ids], [bumps[i][1] for i in ids],
    )
    return len(updated) == len(ids)


async def grant_owner_role(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    await conn.execute(
        """UPDATE users SET roles = array_append(roles, 'owner'), updated_at = now()
           WHERE id = $1 AND NOT 'owner' = ANY (roles)""",
        user_id,
    )


async def get_listing(conn: asyncpg.Connection | asyncpg.Pool, listing_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_LISTING_COLUMNS} FROM listings WHERE id = $1", listing_id)
    return dict(row) if row else None


async def list_owner_listings(
    conn: asyncpg.Connection | asyncpg.Pool, owner_id: uuid.UUID, *, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {_LISTING_COLUMNS} FROM listings
            WHERE owner_id = $1 AND ($2::text IS NULL OR status = $2)
            ORDER BY created_at DESC, id LIMIT $3 OFFSET $4""",
        owner_id, status, limit, offset,
    )
    return [dict(r) for r in rows]


async def review_queue(
    conn: asyncpg.Connection | asyncpg.Pool, *, status: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Oldest first. `pending_review` also lists published listings whose edit awaits review."""
    rows = await conn.fetch(
        f"""SELECT {_LISTING_COLUMNS} FROM listings
            WHERE CASE WHEN $1 = 'pending_review'
                       THEN status = 'pending_review' OR pending_revision IS NOT NULL
                       ELSE status = $1 END
            ORDER BY updated_at, id LIMIT $2 OFFSET $3""",
        status, limit, offset,
    )
    return [dict(r) for r in rows]


async def categories(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, parent_id, name_ru, name_en, position FROM categories ORDER BY position, id")
    return [dict(r) for r in rows]


async def cancellation_policies(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT code, name_ru, name_en, tiers FROM cancellation_policies ORDER BY code")
    return [dict(r) for r in rows]


async def published_by_ids(conn: asyncpg.Connection | asyncpg.Pool, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The published ones of these listings, in the order given."""
    rows = await conn.fetch(
        f"SELECT {_LISTING_COLUMNS} FROM listings WHERE id = ANY($1::uuid[]) AND status = 'published'", ids)
    by_id = {row["id"]: dict(row) for row in rows}
    return [by_id[i] for i in ids if i in by_id]


async def free_between(conn: asyncpg.Connection | asyncpg.Pool, ids: list[uuid.UUID], start: datetime,
                       end: datetime, *, first_day: date, last_day: date) -> set[uuid.UUID]:
    """Those of these listings with a unit free for the whole of [start, end) and none of its
    days (`first_day`..`last_day`, listing time) blocked by the owner. A unit is free when none
    of its bookings overlaps, so a listing has one unless every unit has an overlapping booking."""
    rows = await conn.fetch(
        """SELECT l.id FROM listings l
           WHERE l.id = ANY($1::uuid[])
             AND (SELECT count(DISTINCT b.unit_no) FROM bookings b
                  WHERE b.listing_id = l.id AND b.period && tstzrange($2, $3)) < l.quantity
             AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(l.blocked_periods) p
                             WHERE (p->>'start')::date <= $5 AND (p->>'end')::date >= $4)""",
        ids, start, end, first_day, last_day)
    return {row["id"] for row in rows}

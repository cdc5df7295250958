"""Rentals, their transitions and the bookings that hold units.

Writes come only from the listing entity (actors/listing.py), inside its commit; reads serve the
gateway. The `bookings_no_overlap` exclusion constraint is the last line of defence: a write that
would double-book a unit fails the whole transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import Range

_RENTAL_COLUMNS = (
    "id, listing_id, renter_id, owner_id, status, rental_unit, quantity, start_at, end_at, held_until, "
    "unit_numbers, quote, total, expires_at, details, version, created_at, updated_at"
)


# ---------------------------------------------------------------------------- the listing entity


async def load_open(conn: asyncpg.Connection, listing_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {_RENTAL_COLUMNS}, (SELECT count(*) FROM rental_transitions t WHERE t.rental_id = r.id) AS seq
            FROM rentals r
            WHERE listing_id = $1 AND status IN ('requested', 'accepted', 'active', 'overdue', 'returned')""",
        listing_id,
    )
    return [dict(r) for r in rows]


async def load_holds(conn: asyncpg.Connection, listing_id: uuid.UUID, since: datetime) -> list[asyncpg.Record]:
    """The listing's booked units that still matter (held past `since`)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT rental_id, unit_no, lower(period) AS start, upper(period) AS until FROM bookings
           WHERE listing_id = $1 AND upper(period) > $2""",
        listing_id, since,
    )
    return rows


_RENTAL_FIELDS = ("id", "listing_id", "renter_id", "owner_id", "status", "rental_unit", "quantity", "start_at",
                  "end_at", "held_until", "unit_numbers", "quote", "total", "expires_at", "details", "version")


async def insert_rentals(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    await conn.executemany(
        f"""INSERT INTO rentals ({", ".join(_RENTAL_FIELDS)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(_RENTAL_FIELDS) + 1))})""",
        [tuple(row[name] for name in _RENTAL_FIELDS) for row in rows],
    )


async def update_rentals(conn: asyncpg.Connection, rows: list[tuple[dict[str, Any], int]]) -> None:
    """(row, version the stored row must have). Only the listing entity writes rentals, after its
    own row passed its version check in the same transaction, so these cannot race."""
    await conn.executemany(
        """UPDATE rentals SET status = $2, end_at = $3, held_until = $4, unit_numbers = $5, quote = $6, total = $7,
                              expires_at = $8, details = $9, version = $10, updated_at = now()
           WHERE id = $1 AND version = $11""",
        [(row["id"], row["status"], row["end_at"], row["held_until"], row["unit_numbers"], row["quote"],
          row["total"], row["expires_at"], row["details"], row["version"], expected) for row, expected in rows],
    )


async def add_transitions(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    await conn.executemany(
        """INSERT INTO rental_transitions (rental_id, seq, command, from_status, to_status, actor_id, actor_role,
                                           data, at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [(row["rental_id"], row["seq"], row["command"], row["from_status"], row["to_status"], row["actor_id"],
          row["actor_role"], row["data"], row["at"]) for row in rows],
    )


async def replace_holds(conn: asyncpg.Connection, released: list[uuid.UUID],
                        held: list[tuple[uuid.UUID, uuid.UUID, int, datetime, datetime]]) -> None:
    """Drop the booking rows of `released` rentals, then store `held` rows (rental, listing, unit,
    start, until). A moved hold is both: its old rows go, its new ones come."""
    if released:
        await conn.execute("DELETE FROM bookings WHERE rental_id = ANY($1::uuid[])", released)
    if held:
        await conn.executemany(
            "INSERT INTO bookings (rental_id, listing_id, unit_no, period) VALUES ($1, $2, $3, $4)",
            [(rental, listing, unit, Range(start, until)) for rental, listing, unit, start, until in held],
        )


# ---------------------------------------------------------------------------- reads for the gateway


async def get_rental(conn: asyncpg.Connection | asyncpg.Pool, rental_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""SELECT {_RENTAL_COLUMNS}, (SELECT title FROM listings l WHERE l.id = r.listing_id) AS listing_title
            FROM rentals r WHERE id = $1""",
        rental_id,
    )
    return dict(row) if row else None


async def get_rental_with_history(
    conn: asyncpg.Connection | asyncpg.Pool, rental_id: uuid.UUID
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The rental and its transitions in one round trip (the hot path answers every step)."""
    row = await conn.fetchrow(
        f"""SELECT {_RENTAL_COLUMNS}, (SELECT title FROM listings l WHERE l.id = r.listing_id) AS listing_title,
                   (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'seq', t.seq, 'command', t.command, 'from_status', t.from_status, 'to_status', t.to_status,
                        'actor_id', t.actor_id, 'actor_role', t.actor_role, 'data', t.data, 'at', t.at)
                        ORDER BY t.seq), '[]') FROM rental_transitions t WHERE t.rental_id = r.id) AS history
            FROM rentals r WHERE id = $1""",
        rental_id,
    )
    if row is None:
        return None
    rental = dict(row)
    history = rental.pop("history")
    for step in history:
        step["at"] = datetime.fromisoformat(step["at"])
    return rental, history


async def list_rentals(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, *, role: str, status: str | None,
    limit: int, offset: int,
) -> list[dict[str, Any]]:
    column = "renter_id" if role == "renter" else "owner_id"
    rows = await conn.fetch(
        f"""SELECT {_RENTAL_COLUMNS}, (SELECT title FROM listings l WHERE l.id = r.listing_id) AS listing_title
            FROM rentals r WHERE {column} = $1 AND ($2::text IS NULL OR status = $2)
            ORDER BY created_at DESC, id LIMIT $3 OFFSET $4""",
        user_id, status, limit, offset,
    )
    return [dict(r) for r in rows]


async def unstarted_rentals(conn: asyncpg.Connection | asyncpg.Pool, renter_id: uuid.UUID,
                            listing_id: uuid.UUID, excluding: uuid.UUID) -> tuple[int, int]:
    """(in all, on this listing): the renter's rentals that hold dates and have not started yet
    (requested or accepted), not counting `excluding` (the rental a retried request creates)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS total, count(*) FILTER (WHERE listing_id = $2) AS here FROM rentals
           WHERE renter_id = $1 AND status IN ('requested', 'accepted') AND start_at > now() AND id <> $3""",
        renter_id, listing_id, excluding,
    )
    assert row is not None
    return int(row["total"]), int(row["here"])


async def busy_units(
    conn: asyncpg.Connection | asyncpg.Pool, listing_id: uuid.UUID, slots: list[tuple[datetime, datetime]]
) -> list[int]:
    """How many distinct units are held at some moment of each slot (a day or an hour)."""
    rows = await conn.fetch(
        """SELECT s.i, count(DISTINCT b.unit_no) AS busy
           FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS s(lo, hi, i)
           LEFT JOIN bookings b ON b.listing_id = $1 AND b.period && tstzrange(s.lo, s.hi)
           GROUP BY s.i ORDER BY s.i""",
        listing_id, [lo for lo, _ in slots], [hi for _, hi in slots],
    )
    return [int(r["busy"]) for r in rows]


async def overlapping_pairs(conn: asyncpg.Connection | asyncpg.Pool, listing_id: uuid.UUID) -> int:
    """For tests and benchmarks: overlapping bookings of one unit (always 0 while the constraint holds)."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM bookings a JOIN bookings b
             ON a.listing_id = b.listing_id AND a.unit_no = b.unit_no AND a.rental_id < b.rental_id
            AND a.period && b.period
           WHERE a.listing_id = $1""",
        listing_id,
    ))


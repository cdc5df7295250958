"""What the search index reads from Postgres: listings (a whole snapshot for a build, a few rows
by id for events), current calendars and the category tree.

A build reads everything in one REPEATABLE READ transaction, so the listings, their bookings and
their channel positions all describe the same moment; the stream position is taken before it
(search/replica.py), so every event after the snapshot is in the stream past that position."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import connection

LISTING_COLUMNS = """l.id, l.owner_id, l.status, l.title, l.description, l.photos, l.category_id, l.city, l.lat,
    l.lon, l.rental_unit, l.price_per_unit, l.instant_book, l.quantity, l.blocked_periods, l.created_at,
    l.updated_at"""
_BY_ID = f"SELECT {LISTING_COLUMNS} FROM listings l WHERE l.id = ANY($1::uuid[])"  # noqa: S608 - constant text
_PUBLISHED = f"SELECT {LISTING_COLUMNS} FROM listings l WHERE l.status = 'published'"  # noqa: S608 - constant text
_BATCH = 2000


async def categories(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, parent_id, name_ru, name_en FROM categories ORDER BY position, id")
    return [dict(row) for row in rows]


async def listing_rows(conn: asyncpg.Connection | asyncpg.Pool, listing_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The current rows of these listings (any status; missing ids are simply absent)."""
    ids = [uuid.UUID(i) for i in listing_ids]
    rows = await conn.fetch(_BY_ID, ids)
    return [dict(row) for row in rows]


class Snapshot:
    """Published listings, their calendars and channel positions, as of one moment."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def count_published(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM listings WHERE status = 'published'"))

    async def listings(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Batches of published listings."""
        batch: list[dict[str, Any]] = []
        async for row in self.conn.cursor(_PUBLISHED, prefetch=_BATCH):
            batch.append(dict(row))
            if len(batch) == _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def calendars(self, since: datetime) -> list[Calendar]:
        """Listings (not archived: a paused one keeps its bookings for when it is back) with more
        than one unit, blocked dates, or holds ending after `since`."""
        holds: dict[uuid.UUID, list[tuple[str, int, datetime, datetime]]] = {}
        for row in await self.conn.fetch(
                """SELECT b.listing_id, b.rental_id, b.unit_no, lower(b.period) AS start, upper(b.period) AS until
                   FROM bookings b JOIN listings l ON l.id = b.listing_id
                   WHERE l.status <> 'archived' AND upper(b.period) > $1""", since):
            holds.setdefault(row["listing_id"], []).append(
                (str(row["rental_id"]), row["unit_no"], row["start"], row["until"]))
        rows = await self.conn.fetch(
            """SELECT l.id, l.quantity, l.blocked_periods, coalesce(h.epoch, '') AS epoch, coalesce(h.seq, 0) AS seq
               FROM listings l
               LEFT JOIN channel_heads h ON h.entity_kind = 'listing' AND h.entity_id = l.id::text
               WHERE l.status <> 'archived' AND (l.quantity <> 1 OR l.blocked_periods <> '[]'::jsonb
                                                 OR l.id = ANY($1::uuid[]))""", list(holds))
        return [Calendar(str(row["id"]), row["quantity"], row["blocked_periods"], holds.get(row["id"], []),
                         (row["epoch"], row["seq"])) for row in rows]


@dataclass(frozen=True)
class Calendar:
    listing_id: str
    quantity: int
    blocked_periods: list[dict[str, str]]
    holds: list[tuple[str, int, datetime, datetime]]  # (rental id, unit, start, until)
    as_of: tuple[str, int]  # the listing channel's (epoch, seq) the snapshot includes


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool) -> AsyncIterator[Snapshot]:
    """A read-only REPEATABLE READ transaction: every read through it sees the same moment."""
    async with connection(pool) as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        yield Snapshot(conn)

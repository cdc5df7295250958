"""In-app notifications: written by the notifications consumer, read and marked read over REST.

Every write for a user first takes that user's transaction-scoped advisory lock (`lock_users`), so
the unread count a write publishes is the count after exactly the writes before it, in the order
the user's channel numbers them - two devices marking read at once never leave a stale badge."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = "id, user_id, type, data, source_event, created_at, read_at"
# Namespaces the advisory lock keys, so they cannot collide with another feature's locks.
_LOCK_PREFIX = "notifications:"

Conn = asyncpg.Connection | asyncpg.Pool


async def lock_users(conn: asyncpg.Connection, user_ids: Iterable[str | uuid.UUID]) -> None:
    """Serialise notification writes per user until the transaction ends (sorted: no deadlocks)."""
    for user_id in sorted({str(u) for u in user_ids}):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _LOCK_PREFIX + user_id)


async def insert(conn: asyncpg.Connection, *, notification_id: uuid.UUID, user_id: str | uuid.UUID,
                 notification_type: str, data: dict[str, Any], source_event: uuid.UUID,
                 created_at: datetime) -> bool:
    """False when this event already made this notification for this user (a redelivery)."""
    result = await conn.execute(
        """INSERT INTO notifications (id, user_id, type, data, source_event, created_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, source_event, type) DO NOTHING""",
        notification_id, user_id, notification_type, data, source_event, created_at)
    return bool(result == "INSERT 0 1")


async def unread_count(conn: Conn, user_id: str | uuid.UUID) -> int:
    value = await conn.fetchval(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", user_id)
    return int(value)


async def with_unread_for_room(conn: Conn, user_ids: list[str], notification_type: str,
                               room_id: str) -> set[str]:
    """Which of `user_ids` have an unread notification of this type about this chat room."""
    rows = await conn.fetch(
        """SELECT DISTINCT user_id FROM notifications
           WHERE user_id = ANY($1::uuid[]) AND type = $2 AND read_at IS NULL AND data->>'room_id' = $3""",
        user_ids, notification_type, room_id)
    return {str(row["user_id"]) for row in rows}


async def page(conn: Conn, user_id: uuid.UUID, *, unread_only: bool, before: tuple[datetime, uuid.UUID] | None,
               limit: int) -> list[dict[str, Any]]:
    """Newest first, strictly after the position `before` (created_at, id) in that order."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM notifications
            WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL)
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $5""",
        user_id, unread_only, before[0] if before else None, before[1] if before else None, limit)
    return [dict(row) for row in rows]


async def mark_read(conn: asyncpg.Connection, user_id: uuid.UUID, notification_id: uuid.UUID
                    ) -> tuple[dict[str, Any] | None, bool]:
    """(the notification, whether this call marked it) - (None, False) if it is not the user's."""
    row = await conn.fetchrow(
        f"""WITH marked AS (
                UPDATE notifications SET read_at = now()
                WHERE id = $1 AND user_id = $2 AND read_at IS NULL RETURNING {_COLUMNS})
            SELECT {_COLUMNS}, true AS changed FROM marked
            UNION ALL
            SELECT {_COLUMNS}, false FROM notifications
            WHERE id = $1 AND user_id = $2 AND NOT EXISTS (SELECT 1 FROM marked)""",
        notification_id, user_id)
    if row is None:
        return None, False
    found = dict(row)
    return found, bool(found.pop("changed"))


async def mark_all_read(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    result = await conn.execute(
        "UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL", user_id)
    return int(result.split()[-1])


async def mark_room_read(conn: asyncpg.Connection, user_id: str | uuid.UUID, notification_type: str,
                         room_id: str) -> list[uuid.UUID]:
    """Mark the user's unread notifications of this type about a chat room read; their ids."""
    rows = await conn.fetch(
        """UPDATE notifications SET read_at = now()
           WHERE user_id = $1 AND type = $2 AND read_at IS NULL AND data->>'room_id' = $3 RETURNING id""",
        user_id, notification_type, room_id)
    return [row["id"] for row in rows]


async def listing_owner(conn: Conn, listing_id: str) -> tuple[str, str] | None:
    """(owner id, title) of a listing."""
    row = await conn.fetchrow("SELECT owner_id, title FROM listings WHERE id = $1", uuid.UUID(listing_id))
    return (str(row["owner_id"]), row["title"]) if row else None


async def rental_parties(conn: Conn, rental_id: str) -> dict[str, str] | None:
    """A rental's listing, its title and both parties."""
    row = await conn.fetchrow(
        """SELECT r.listing_id, r.renter_id, r.owner_id, l.title FROM rentals r
           JOIN listings l ON l.id = r.listing_id WHERE r.id = $1""",
        uuid.UUID(rental_id))
    if row is None:
        return None
    return {"listing_id": str(row["listing_id"]), "renter_id": str(row["renter_id"]),
            "owner_id": str(row["owner_id"]), "title": row["title"]}

"""Chat rooms and their messages. The room row and new messages are written by the chat entity
(actors/chat.py), which owns them; everything here besides those writes is a read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

_ROOM_COLUMNS = (
    "id, listing_id, owner_id, renter_id, rental_id, last_seq, owner_read_seq, renter_read_seq, "
    "last_message_at, last_preview, version, created_at"
)


async def load_room(conn: asyncpg.Connection | asyncpg.Pool, room_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_ROOM_COLUMNS} FROM chat_rooms WHERE id = $1", room_id)
    return dict(row) if row else None


async def get_room(conn: asyncpg.Connection | asyncpg.Pool, room_id: uuid.UUID) -> dict[str, Any] | None:
    """The room with its listing's title (what a room list and a websocket subscription need)."""
    row = await conn.fetchrow(
        f"""SELECT {', '.join('r.' + c.strip() for c in _ROOM_COLUMNS.split(','))}, l.title AS listing_title
            FROM chat_rooms r JOIN listings l ON l.id = r.listing_id WHERE r.id = $1""",
        room_id)
    return dict(row) if row else None


async def insert_room(conn: asyncpg.Connection, row: dict[str, Any], version: int) -> bool:
    result = await conn.execute(
        """INSERT INTO chat_rooms (id, listing_id, owner_id, renter_id, rental_id, last_seq, owner_read_seq,
                                   renter_read_seq, last_message_at, last_preview, version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING""",
        row["id"], row["listing_id"], row["owner_id"], row["renter_id"], row["rental_id"], row["last_seq"],
        row["owner_read_seq"], row["renter_read_seq"], row["last_message_at"], row["last_preview"], version)
    return bool(result == "INSERT 0 1")


async def update_room(conn: asyncpg.Connection, row: dict[str, Any], expected_version: int, version: int) -> bool:
    result = await conn.execute(
        """UPDATE chat_rooms SET rental_id = $2, last_seq = $3, owner_read_seq = $4, renter_read_seq = $5,
                                 last_message_at = $6, last_preview = $7, version = $8
           WHERE id = $1 AND version = $9""",
        row["id"], row["rental_id"], row["last_seq"], row["owner_read_seq"], row["renter_read_seq"],
        row["last_message_at"], row["last_preview"], version, expected_version)
    return bool(result == "UPDATE 1")


async def insert_messages(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    await conn.execute(
        """INSERT INTO chat_messages (room_id, seq, sender_id, client_msg_id, kind, body, data, created_at)
           SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                $7::jsonb[], $8::timestamptz[])""",
        [r["room_id"] for r in rows], [r["seq"] for r in rows], [r["sender_id"] for r in rows],
        [r["client_msg_id"] for r in rows], [r["kind"] for r in rows], [r["body"] for r in rows],
        [r["data"] for r in rows], [r["created_at"] for r in rows])


async def list_rooms(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, *, limit: int,
                     before: datetime | None = None) -> list[dict[str, Any]]:
    """The user's rooms, most recent activity first, each with the user's unread count."""
    rows = await conn.fetch(
        f"""SELECT {', '.join('r.' + c.strip() for c in _ROOM_COLUMNS.split(','))}, l.title AS listing_title,
                   r.last_seq - CASE WHEN r.owner_id = $1 THEN r.owner_read_seq ELSE r.renter_read_seq END
                       AS unread
            FROM chat_rooms r JOIN listings l ON l.id = r.listing_id
            WHERE (r.owner_id = $1 OR r.renter_id = $1)
              AND ($3::timestamptz IS NULL OR coalesce(r.last_message_at, r.created_at) < $3)
            ORDER BY coalesce(r.last_message_at, r.created_at) DESC, r.id
            LIMIT $2""",
        user_id, limit, before)
    return [dict(row) for row in rows]


async def total_unread(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> int:
    value = await conn.fetchval(
        """SELECT coalesce(sum(last_seq - CASE WHEN owner_id = $1 THEN owner_read_seq ELSE renter_read_seq END), 0)
           FROM chat_rooms WHERE owner_id = $1 OR renter_id = $1""",
        user_id)
    return int(value)


async def messages(conn: asyncpg.Connection | asyncpg.Pool, room_id: uuid.UUID, *, before: int | None,
                   limit: int) -> list[dict[str, Any]]:
    """A page of a room's history, newest first, strictly before message `before`."""
    rows = await conn.fetch(
        """SELECT seq, sender_id, client_msg_id, kind, body, data, created_at FROM chat_messages
           WHERE room_id = $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3""",
        room_id, before, limit)
    return [dict(row) for row in rows]

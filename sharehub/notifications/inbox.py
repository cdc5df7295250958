"""A user's notification list: reading it and marking it read.

Marking read also tells the user's other devices (`notifications_read` on the user channel, with
the new unread count), in the same transaction as the change; a call that changes nothing (the
notification was read already) publishes nothing."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from sharehub.notifications import events
from sharehub.notifications.channels import view
from storage import notifications as store
from storage.db import transaction


async def page(pool: asyncpg.Pool, user_id: uuid.UUID, *, unread_only: bool,
               before: tuple[datetime, uuid.UUID] | None, limit: int
               ) -> tuple[list[dict[str, Any]], tuple[datetime, uuid.UUID] | None, int]:
    """(items newest first, the position of the next page or None, the unread count)."""
    rows = await store.page(pool, user_id, unread_only=unread_only, before=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    after = (rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return [view(row) for row in rows], after, await store.unread_count(pool, user_id)


async def mark_read(pool: asyncpg.Pool, user_id: uuid.UUID, notification_id: uuid.UUID) -> dict[str, Any] | None:
    """The notification, now read; None when the user has no such notification."""
    async with transaction(pool, "notification_mark_read") as conn:
        await store.lock_users(conn, [user_id])
        row, changed = await store.mark_read(conn, user_id, notification_id)
        if row is None:
            return None
        if changed:
            unread = await store.unread_count(conn, user_id)
            await events.publish(conn, [events.user_event(
                user_id, events.NOTIFICATIONS_READ, {"ids": [str(notification_id)], "unread_count": unread})])
        return view(row)


async def mark_all_read(pool: asyncpg.Pool, user_id: uuid.UUID) -> int:
    """How many notifications this call marked read."""
    async with transaction(pool, "notifications_mark_all_read") as conn:
        await store.lock_users(conn, [user_id])
        updated = await store.mark_all_read(conn, user_id)
        if updated:
            await events.publish(conn, [events.user_event(
                user_id, events.NOTIFICATIONS_READ, {"all": True, "unread_count": 0})])
        return updated

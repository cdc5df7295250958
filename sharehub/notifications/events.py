"""Events on a user's own channel (`user:me` on the websocket): outbox rows of kind `user`.

They go through the same outbox as entity events, so they get the channel's gap-free `seq` and a
client that reconnects replays what it missed (storage/channels.py). `version` is 0: a user
channel is not an entity with versions; `seq` orders it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from storage.runtime import add_outbox_events

KIND = "user"
# The event types a user channel carries (documented in api/asyncapi.yaml, channel userEvents).
NOTIFICATION = "notification"
NOTIFICATIONS_READ = "notifications_read"
CHAT_UNREAD = "chat_unread"
USER_EVENT_TYPES = (NOTIFICATION, NOTIFICATIONS_READ, CHAT_UNREAD)

OutboxRow = tuple[uuid.UUID, str, str, str, str, dict[str, Any]]


def user_event(user_id: str | uuid.UUID, event_type: str, data: dict[str, Any]) -> OutboxRow:
    event_id = uuid.uuid4()
    payload = {
        "event_id": str(event_id), "type": event_type, "kind": KIND, "entity_id": str(user_id), "version": 0,
        "occurred_at": datetime.now(UTC).isoformat(), "data": data,
    }
    return event_id, f"{KIND}.{user_id}.{event_type}", KIND, str(user_id), event_type, payload


async def publish(conn: asyncpg.Connection, rows: list[OutboxRow]) -> None:
    """In the caller's transaction: the events leave only if it commits."""
    await add_outbox_events(conn, list(rows))

"""Where a notification goes: the channels, behind one protocol, in a registry.

Every channel records its delivery in the transaction that consumed the domain event - the in-app
channel stores the row and pushes it to the user's websocket channel through the outbox; an e-mail
channel would queue a message in `email_outbox` (storage/email_outbox.py) for the mail worker; a
push channel would queue for a push sender. So a redelivered event never delivers twice, a rolled
back one delivers nothing, and the slow part (SMTP, APNs/FCM) runs later outside the transaction.
E-mail and push are not built yet: they plug in with `register_channel` (and will choose per
notification type and the user's settings which notifications they take)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from sharehub.notifications import events
from storage import notifications as store


@dataclass(frozen=True)
class Notification:
    id: uuid.UUID
    user_id: str
    type: str
    data: dict[str, Any]
    source_event: uuid.UUID
    created_at: datetime
    read_at: datetime | None = None

    def wire(self) -> dict[str, Any]:
        """How clients see it: REST and the `notification` event on the user channel alike."""
        return view({"id": self.id, "type": self.type, "data": self.data, "created_at": self.created_at,
                     "read_at": self.read_at})


def view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "type": row["type"], "data": row["data"],
        "created_at": row["created_at"].isoformat(),
        "read_at": row["read_at"].isoformat() if row["read_at"] else None,
    }


class NotificationChannel(Protocol):
    name: str

    async def deliver(self, conn: asyncpg.Connection, notification: Notification) -> None:
        """Record the delivery in the caller's transaction (see the module docstring)."""


class InAppChannel:
    """The notification list (`GET /api/v1/notifications`) and the live `user:me` push."""

    name = "in_app"

    async def deliver(self, conn: asyncpg.Connection, notification: Notification) -> None:
        stored = await store.insert(
            conn, notification_id=notification.id, user_id=notification.user_id, notification_type=notification.type,
            data=notification.data, source_event=notification.source_event, created_at=notification.created_at)
        if not stored:  # this event already made it: nothing new to push either
            return
        unread = await store.unread_count(conn, notification.user_id)
        await events.publish(conn, [events.user_event(
            notification.user_id, events.NOTIFICATION, {"notification": notification.wire(), "unread_count": unread})])


_REGISTRY: list[NotificationChannel] = [InAppChannel()]


def register_channel(channel: NotificationChannel) -> None:
    """Add a channel at start-up; every notification made afterwards goes to it too."""
    if all(existing.name != channel.name for existing in _REGISTRY):
        _REGISTRY.append(channel)


def registered_channels() -> tuple[NotificationChannel, ...]:
    return tuple(_REGISTRY)

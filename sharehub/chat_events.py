"""Every step of a rental appears in the pair's chat room as a system message.

A durable consumer of rental events sends each one to the room of (listing, renter) as the
command `system`, with a command id derived from the event id: a redelivered event returns the
first result instead of adding the message twice. `sharehub/consumers.py` hands it each rental's
events in seq order, whatever gateway process they reach, so the messages keep the steps' order.
The shard commits the message in its own transaction and the consumer's position commits after
it: if that second commit fails, the event comes again and the command returns its first result.
The room is created by its first message if the renter booked without asking anything first.
Clients render `data.text` in their language; `body` is a stable code (`rental.accepted`, …) for
clients that render their own text."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from actors.chat import KIND as CHAT
from actors.chat import ROOM_NAMESPACE, room_id
from gateway.entities import execute_as
from sharehub.consumers import Consumer
from sharehub.errors import ApiError
from sharehub.platform import Platform

CONSUMER = "chat_rental_messages"
SUBJECTS = ("rental.*.state_changed", "rental.*.extension_requested", "rental.*.extended",
            "rental.*.extension_declined")
_SYSTEM = frozenset({"system"})

# (ru, en) per new status; instant book ("accepted" straight from nothing) has its own line.
_STATUS_TEXT: dict[str, tuple[str, str]] = {
    "requested": ("Арендатор отправил запрос на аренду.", "The renter sent a rental request."),
    "accepted": ("Владелец подтвердил аренду.", "The owner accepted the rental."),
    "declined": ("Владелец отклонил запрос.", "The owner declined the request."),
    "cancelled": ("Аренда отменена.", "The rental was cancelled."),
    "expired": ("Запрос истёк: владелец не ответил вовремя.", "The request expired without an answer."),
    "active": ("Вещь передана арендатору.", "The item was handed over to the renter."),
    "overdue": ("Срок аренды вышел, а вещь ещё не возвращена.", "The rental is over but the item is not back yet."),
    "returned": ("Вещь возвращена владельцу.", "The item was returned to the owner."),
    "completed": ("Аренда завершена.", "The rental is complete."),
}
_INSTANT_BOOK = ("Аренда забронирована мгновенно.", "The rental was booked instantly.")
_EXTENSION_TEXT: dict[str, tuple[str, str]] = {
    "extension_requested": ("Арендатор просит продлить аренду.", "The renter asked to extend the rental."),
    "extended": ("Аренда продлена.", "The rental was extended."),
    "extension_declined": ("Владелец отклонил продление.", "The owner declined the extension."),
}


def system_message(event: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(body code, data) of the system message for a rental event, or None for none."""
    data, event_type = event.get("data") or {}, event.get("type")
    if event_type == "state_changed":
        status = data.get("to")
        if status not in _STATUS_TEXT:
            return None
        ru, en = _INSTANT_BOOK if status == "accepted" and data.get("from") is None else _STATUS_TEXT[status]
        code = f"rental.{status}"
    elif event_type in _EXTENSION_TEXT:
        ru, en = _EXTENSION_TEXT[str(event_type)]
        code = f"rental.{event_type}"
    else:
        return None
    details = {k: data[k] for k in ("from", "to", "by", "start", "end", "total") if k in data}
    return code, {"rental_id": event.get("entity_id"), "event": event_type, **details, "text": {"ru": ru, "en": en}}


def chat_consumer(platform: Platform) -> Consumer:
    async def handle(event: dict[str, Any], conn: asyncpg.Connection | None = None) -> None:
        # `conn` is unused: the effect is a shard command, idempotent by its derived id.
        message = system_message(event)
        data = event.get("data") or {}
        if message is None or not all(data.get(k) for k in ("listing_id", "renter_id", "owner_id")):
            return
        body, message_data = message
        payload = {"listing_id": data["listing_id"], "owner_id": data["owner_id"], "renter_id": data["renter_id"],
                   "rental_id": event["entity_id"], "body": body, "data": message_data}
        try:
            await execute_as(platform, CHAT, room_id(data["listing_id"], data["renter_id"]), "system", payload,
                             actor_id=None, actor_roles=_SYSTEM,
                             command_id=uuid.uuid5(ROOM_NAMESPACE, f"system:{event['event_id']}"))
        except ApiError as error:
            if error.status >= 500:
                raise  # the entity service is unavailable: leave the event for redelivery
            # A refusal (a malformed old event) will not change on retry; nothing to store.

    return Consumer(CONSUMER, SUBJECTS, handle, platform.db)

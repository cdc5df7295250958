"""The notifications consumer: domain events in, notifications and badge updates out.

One event is one transaction: the consumer's position in the event's channel (sharehub/consumers.py
applies each entity's events in seq order and moves the position in this transaction),
`mark_consumed`, the notifications (through every registered channel) and the user-channel events
commit together, so a redelivered event (at-least-once) changes nothing, and a failure leaves
nothing half done - the event comes back and runs again. `mark_consumed` stays beside the
position: on the ordered path it is redundant, but `handle_event` also runs outside it (a replay,
a test, an event of a channel history that was reset), where the event id is the only key.
What an event does not say is read first: immutable facts (a listing's owner, a room's parties)
and who is online (Redis - presence is a hint, a second old is fine); then the users involved are
locked (storage/notifications.py says why) and the counts read."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from sharehub import presence
from sharehub.consumers import Consumer
from sharehub.notifications import events
from sharehub.notifications.channels import Notification, registered_channels
from sharehub.notifications.rules import SUBJECTS, DomainEvent, Facts, Plan, concerns, plan
from sharehub.platform import Platform
from storage import chats
from storage import notifications as store
from storage.db import transaction
from storage.runtime import mark_consumed

log = logging.getLogger(__name__)

CONSUMER = "notifications"
MESSAGE_RECEIVED = "message_received"


def notification_consumer(platform: Platform) -> Consumer:
    async def handle(event: dict[str, Any], conn: asyncpg.Connection | None = None) -> None:
        if conn is None:
            await handle_event(platform, event)
        else:
            await apply_event(platform, conn, event)

    return Consumer(CONSUMER, SUBJECTS, handle, platform.db)


async def handle_event(platform: Platform, payload: dict[str, Any]) -> None:
    """One event in a transaction of its own."""
    async with transaction(platform.db, "notify_event") as conn:
        await apply_event(platform, conn, payload)


async def apply_event(platform: Platform, conn: asyncpg.Connection, payload: dict[str, Any]) -> None:
    """One event inside the caller's transaction."""
    try:
        event = DomainEvent.parse(payload)
    except (KeyError, ValueError, TypeError):
        # Retrying cannot fix a malformed envelope; acknowledge it and say so.
        log.error("notifications: malformed event skipped", extra={"payload": str(payload)[:500]})
        return
    if not concerns(event):
        return  # e.g. a rental completed: nobody is told, nothing to record
    room: dict[str, Any] | None = None
    online: frozenset[str] = frozenset()
    if event.kind == "chat":
        room = await chats.get_room(conn, uuid.UUID(event.entity_id))
        if room is None:
            return
        if event.type == "message_sent":
            parties = [str(room["owner_id"]), str(room["renter_id"])]
            states = await presence.online_among(platform.redis, parties)
            online = frozenset(user for user, is_online in states.items() if is_online)
    if not await mark_consumed(conn, CONSUMER, event.event_id):
        return  # a redelivery: the first delivery did everything
    facts = await _facts(conn, event, room, online)
    if facts is None:
        return
    await _carry_out(conn, event, plan(event, facts))


async def _facts(conn: asyncpg.Connection, event: DomainEvent, room: dict[str, Any] | None,
                 online: frozenset[str]) -> Facts | None:
    """The facts for `plan`, with the users involved locked (None: nothing to tell anyone)."""
    if event.kind == "rental":
        rental = await store.rental_parties(conn, event.entity_id)
        if rental is None:
            return None
        await store.lock_users(conn, [rental["owner_id"], rental["renter_id"]])
        return Facts(listing_id=rental["listing_id"], listing_title=rental["title"], owner_id=rental["owner_id"],
                     renter_id=rental["renter_id"])
    if event.kind == "listing":
        found = await store.listing_owner(conn, event.entity_id)
        if found is None:
            return None
        await store.lock_users(conn, [found[0]])
        return Facts(listing_id=event.entity_id, listing_title=found[1], owner_id=found[0])
    if event.kind == "chat" and room is not None:
        return await _chat_facts(conn, event, room, online)
    return None


async def _chat_facts(conn: asyncpg.Connection, event: DomainEvent, room: dict[str, Any],
                      online: frozenset[str]) -> Facts:
    owner, renter = str(room["owner_id"]), str(room["renter_id"])
    await store.lock_users(conn, [owner, renter])
    # Read again under the locks: the counts published last are then the newest.
    fresh = await chats.get_room(conn, room["id"]) or room
    unread = {}
    for user, read_seq in ((owner, fresh["owner_read_seq"]), (renter, fresh["renter_read_seq"])):
        unread[user] = (max(0, fresh["last_seq"] - read_seq), await chats.total_unread(conn, uuid.UUID(user)))
    notified: set[str] = set()
    if event.type == "message_sent":
        notified = await store.with_unread_for_room(conn, [owner, renter], MESSAGE_RECEIVED, event.entity_id)
    return Facts(listing_id=str(room["listing_id"]), listing_title=str(room.get("listing_title") or ""),
                 owner_id=owner, renter_id=renter, rental_id=str(room["rental_id"]) if room["rental_id"] else None,
                 online=online, unread=unread, notified=frozenset(notified))


async def _carry_out(conn: asyncpg.Connection, event: DomainEvent, decided: Plan) -> None:
    now = datetime.now(UTC)
    for item in decided.notifications:
        notification = Notification(uuid.uuid4(), item.user_id, item.type, item.data, event.event_id, now)
        for channel in registered_channels():
            await channel.deliver(conn, notification)
    rows: list[events.OutboxRow] = []
    for user_id, room_id in decided.clear_room_notices:
        cleared = await store.mark_room_read(conn, user_id, MESSAGE_RECEIVED, room_id)
        if cleared:
            unread = await store.unread_count(conn, user_id)
            rows.append(events.user_event(user_id, events.NOTIFICATIONS_READ,
                                          {"ids": [str(i) for i in cleared], "unread_count": unread}))
    rows.extend(events.user_event(item.user_id, item.type, item.data) for item in decided.live)
    await events.publish(conn, rows)

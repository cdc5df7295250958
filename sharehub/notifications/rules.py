"""Which domain event makes which notification for whom: pure functions, no I/O.

The consumer reads what an event alone does not say (the listing's owner and title, who is online,
unread counts) into `Facts`, then `plan(event, facts)` decides. Nobody is notified of a step they
took themselves (the owner returning an item, the renter confirming the handover).

| event                                           | who                  | notification type         |
|-------------------------------------------------|----------------------|---------------------------|
| rental state_changed null -> requested          | owner                | rental_requested          |
| rental state_changed null -> accepted (instant) | owner                | rental_booked             |
| rental state_changed requested -> accepted      | renter               | rental_accepted           |
| rental state_changed -> declined                | renter               | rental_declined           |
| rental state_changed -> expired                 | renter               | rental_expired            |
| rental state_changed -> cancelled               | the other party (*)  | rental_cancelled          |
| rental state_changed -> active                  | owner                | rental_started            |
| rental state_changed -> overdue                 | renter and owner     | rental_overdue            |
| rental state_changed -> returned                | renter               | rental_returned           |
| rental extension_requested                      | owner                | extension_requested       |
| rental extended                                 | renter               | extension_accepted        |
| rental extension_declined                       | renter               | extension_declined        |
| listing published                               | owner                | listing_approved          |
| listing rejected                                | owner                | listing_rejected          |
| listing revision_approved                       | owner                | listing_revision_approved |
| listing revision_rejected                       | owner                | listing_revision_rejected |
| chat message_sent (by a party)                  | the other party (**) | message_received          |

(*) both parties when a moderator cancelled. (**) only while offline, and only if they have no
unread `message_received` for that room yet: one per room until they read it (reading the room
marks it read), however many messages arrive.

Besides notifications, chat events update the parties' unread badges live (`chat_unread` on the
user channel): `message_sent` for both parties (the sender's marker moves to its own message),
`read` for the reader (their other devices). System messages in a room (a rental's steps) make no
`message_received`: the rental's own notification already tells."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sharehub.notifications.texts import render

# "others": the parties who did not take the step (`data.by`), so both when a moderator did.
Recipients = Literal["owner", "renter", "both", "others"]
# A message's text shown in its notification (the room has the whole message).
_MAX_PREVIEW_CHARS = 140


@dataclass(frozen=True)
class DomainEvent:
    """The envelope of a published entity event (see api/asyncapi.yaml)."""

    event_id: uuid.UUID
    kind: str
    type: str
    entity_id: str
    data: Mapping[str, Any]

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> DomainEvent:
        """Raises KeyError/ValueError/TypeError on a malformed envelope (every entity id is a UUID)."""
        data = payload.get("data") or {}
        if not isinstance(data, Mapping):
            raise TypeError("event data is not an object")
        return cls(uuid.UUID(str(payload["event_id"])), str(payload["kind"]), str(payload["type"]),
                   str(uuid.UUID(str(payload["entity_id"]))), data)


@dataclass(frozen=True)
class Rule:
    kind: str
    event: str
    notify: Recipients
    type: str
    # state_changed only: the status it moved to; `new` True = a new rental (from null), False = not.
    to: str | None = None
    new: bool | None = None
    # The event's data fields copied into the notification's data (those present).
    fields: tuple[str, ...] = ()

    def matches(self, event: DomainEvent) -> bool:
        if (event.kind, event.type) != (self.kind, self.event):
            return False
        if self.to is not None and event.data.get("to") != self.to:
            return False
        return self.new is None or (event.data.get("from") is None) == self.new


_PERIOD = ("start", "end", "quantity", "total")
RULES: tuple[Rule, ...] = (
    Rule("rental", "state_changed", "owner", "rental_requested", to="requested", fields=_PERIOD),
    Rule("rental", "state_changed", "owner", "rental_booked", to="accepted", new=True, fields=_PERIOD),
    Rule("rental", "state_changed", "renter", "rental_accepted", to="accepted", new=False),
    Rule("rental", "state_changed", "renter", "rental_declined", to="declined", fields=("reason",)),
    Rule("rental", "state_changed", "renter", "rental_expired", to="expired"),
    Rule("rental", "state_changed", "others", "rental_cancelled", to="cancelled",
         fields=("by", "reason", "refund_percent", "refund_amount")),
    Rule("rental", "state_changed", "owner", "rental_started", to="active"),
    Rule("rental", "state_changed", "both", "rental_overdue", to="overdue"),
    Rule("rental", "state_changed", "renter", "rental_returned", to="returned", fields=("late_fee",)),
    Rule("rental", "extension_requested", "owner", "extension_requested", fields=("end",)),
    Rule("rental", "extended", "renter", "extension_accepted", fields=("end", "total")),
    Rule("rental", "extension_declined", "renter", "extension_declined", fields=("end",)),
    Rule("listing", "published", "owner", "listing_approved", fields=("first",)),
    Rule("listing", "rejected", "owner", "listing_rejected", fields=("reason",)),
    Rule("listing", "revision_approved", "owner", "listing_revision_approved"),
    Rule("listing", "revision_rejected", "owner", "listing_revision_rejected", fields=("reason",)),
)

# The subjects the consumer follows: exactly the events some rule (or the chat badges) acts on.
SUBJECTS: tuple[str, ...] = (*sorted({f"{r.kind}.*.{r.event}" for r in RULES}), "chat.*.message_sent", "chat.*.read")


@dataclass(frozen=True)
class Facts:
    """What the rules need beyond the event. Rentals and listings: the listing (and the rental's
    parties); chats: the room, who of its parties is online, their unread counts, and who already
    has an unread `message_received` for the room."""

    listing_id: str | None = None
    listing_title: str = ""
    owner_id: str | None = None
    renter_id: str | None = None
    rental_id: str | None = None
    online: frozenset[str] = frozenset()
    # user id -> (unread in this room, unread in all their rooms)
    unread: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    notified: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Planned:
    """One user-channel item: a notification (stored) or a live update (`chat_unread`, not stored)."""

    user_id: str
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    notifications: tuple[Planned, ...] = ()
    live: tuple[Planned, ...] = ()
    # (user id, room id): the user read the room, so their `message_received` for it is read too.
    clear_room_notices: tuple[tuple[str, str], ...] = ()


def concerns(event: DomainEvent) -> bool:
    """Whether the event can make anything at all (the consumer skips the others unread)."""
    if event.kind == "chat":
        return event.type in ("message_sent", "read")
    return any(rule.matches(event) for rule in RULES)


def plan(event: DomainEvent, facts: Facts) -> Plan:
    if event.kind == "chat":
        return _chat_plan(event, facts)
    notifications = [item for rule in RULES if rule.matches(event) for item in _apply(rule, event, facts)]
    return Plan(notifications=tuple(notifications))


def _apply(rule: Rule, event: DomainEvent, facts: Facts) -> list[Planned]:
    parties = {"owner": facts.owner_id, "renter": facts.renter_id}
    roles: tuple[str, ...]
    if rule.notify == "others":
        roles = tuple(role for role in ("renter", "owner") if role != event.data.get("by"))
    elif rule.notify == "both":
        roles = ("renter", "owner")
    else:
        roles = (rule.notify,)
    planned = []
    for role in roles:
        user_id = parties[role]
        if user_id is None:
            continue
        data: dict[str, Any] = {"listing_id": facts.listing_id, "listing_title": facts.listing_title}
        if event.kind == "rental":
            data["rental_id"] = event.entity_id
        data.update({name: event.data[name] for name in rule.fields if name in event.data})
        variant = str(event.data.get("by", "")) if rule.type == "rental_cancelled" else role
        data["text"] = render(rule.type, title=facts.listing_title, variant=variant)
        planned.append(Planned(user_id, rule.type, data))
    return planned


def _parties(facts: Facts) -> list[str]:
    return [user for user in (facts.owner_id, facts.renter_id) if user is not None]


def _badge(user_id: str, room_id: str, facts: Facts) -> Planned:
    unread, total = facts.unread.get(user_id, (0, 0))
    return Planned(user_id, "chat_unread", {"room_id": room_id, "unread": unread, "total_unread": total})


def _chat_plan(event: DomainEvent, facts: Facts) -> Plan:
    room_id = event.entity_id
    if event.type == "read":
        reader = str(event.data.get("user_id") or "")
        if reader not in _parties(facts):
            return Plan()
        return Plan(live=(_badge(reader, room_id, facts),), clear_room_notices=((reader, room_id),))
    if event.type != "message_sent":
        return Plan()
    message = event.data.get("message") or {}
    sender = message.get("sender_id")
    live = tuple(_badge(user, room_id, facts) for user in _parties(facts))
    if sender is None:  # a system message: the rental's own notification already tells
        return Plan(live=live)
    notifications = []
    for user in _parties(facts):
        if user == str(sender) or user in facts.online or user in facts.notified:
            continue
        data = {
            "room_id": room_id, "listing_id": facts.listing_id, "listing_title": facts.listing_title,
            "rental_id": facts.rental_id, "sender_id": str(sender), "seq": message.get("seq"),
            "preview": str(message.get("body", ""))[:_MAX_PREVIEW_CHARS],
            "text": render("message_received", title=facts.listing_title),
        }
        notifications.append(Planned(user, "message_received", data))
    return Plan(notifications=tuple(notifications), live=live)

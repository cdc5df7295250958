"""Who may watch a channel, and what each audience of a channel sees.

- `listing:<id>`: anyone logged in while the listing is public (published or paused, as over
  REST); its owner, moderators and admins whatever its status. The public sees only the events
  that describe what the public page shows, without the rental they came from.
- `rental:<id>`, `chat:<id>`: the two parties, moderators and admins. Anyone else gets
  `not_found`, as over REST: a stranger must not learn that it exists.
- `user:me`: one's own notifications (and unread counters)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from gateway.chat_actions import viewer_role as chat_role
from gateway.listing_views import PUBLIC_STATUSES, can_see_everything
from gateway.realtime.protocol import ChannelRef
from gateway.rental_views import viewer_role as rental_role
from sharehub.errors import not_found
from sharehub.platform import Platform
from sharehub.security.tokens import AccessClaims
from storage import chats as chat_store
from storage import listings as listing_store
from storage import rentals as rental_store


class Audience(IntEnum):
    FULL = 0
    PUBLIC = 1


# What a listing's public watchers get: changes of what its public page shows.
PUBLIC_LISTING_EVENTS = frozenset({"availability_changed", "updated", "paused", "resumed", "archived", "published"})
# Data the public does not see: which rental took the dates.
_PRIVATE_FIELDS = ("rental_id",)


@dataclass(frozen=True, slots=True)
class Grant:
    audience: Audience
    # A chat's two parties (their presence is pushed to the room's watchers).
    parties: tuple[str, ...] = ()


FULL = Grant(Audience.FULL)
PUBLIC = Grant(Audience.PUBLIC)


async def authorize(platform: Platform, claims: AccessClaims, ref: ChannelRef) -> Grant:
    """What `claims` may see of the channel; ApiError(not_found) if nothing."""
    db = platform.db
    if ref.kind == "listing":
        listing = await listing_store.get_listing(db, uuid.UUID(ref.entity_id))
        if listing is None:
            raise not_found("listing")
        if can_see_everything(listing, claims):
            return FULL
        if listing["status"] not in PUBLIC_STATUSES:
            raise not_found("listing")
        return PUBLIC
    if ref.kind == "rental":
        rental = await rental_store.get_rental(db, uuid.UUID(ref.entity_id))
        if rental is None or rental_role(rental, claims) is None:
            raise not_found("rental")
        return FULL
    if ref.kind == "chat":
        room = await chat_store.get_room(db, uuid.UUID(ref.entity_id))
        if room is None or chat_role(room, claims) is None:
            raise not_found("chat")
        return Grant(Audience.FULL, (str(room["owner_id"]), str(room["renter_id"])))
    if ref.kind == "user" and ref.entity_id == str(claims.user_id):
        return FULL
    raise not_found("channel")


def for_audience(payload: dict[str, Any], audience: Audience) -> dict[str, Any] | None:
    """The event as `audience` sees it, or None when it does not see it at all."""
    if audience is Audience.FULL:
        return payload
    if payload.get("type") not in PUBLIC_LISTING_EVENTS:
        return None
    data = payload.get("data")
    if isinstance(data, dict) and any(field in data for field in _PRIVATE_FIELDS):
        return {**payload, "data": {k: v for k, v in data.items() if k not in _PRIVATE_FIELDS}}
    return payload

"""What a client can do in chats, shared by the REST routes and the websocket gateway (the socket
and its REST fallback must behave the same). Writes are commands to the room's entity
(actors/chat.py); reads come from Postgres."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from actors.chat import KIND as CHAT
from actors.chat import room_id as derive_room_id
from actors.chat import send_command_id
from gateway.entities import execute_as
from sharehub.errors import ApiError, not_found
from sharehub.platform import Platform
from sharehub.security.tokens import AccessClaims
from storage import chats as store
from storage import listings as listing_store

MODERATOR_ROLES = frozenset({"moderator", "admin"})
# Core NATS subject of a room's ephemeral signals (typing): never stored, never replayed.
EPHEMERAL_SUBJECT = "ephemeral.chat.{room_id}"


def viewer_role(room: dict[str, Any], claims: AccessClaims) -> str | None:
    """owner / renter / moderator, or None for anyone else (who must not learn the room exists)."""
    if room["owner_id"] == claims.user_id:
        return "owner"
    if room["renter_id"] == claims.user_id:
        return "renter"
    if MODERATOR_ROLES & claims.roles:
        return "moderator"
    return None


def room_view(room: dict[str, Any], role: str) -> dict[str, Any]:
    own_read = room["owner_read_seq"] if role == "owner" else room["renter_read_seq"]
    other_read = room["renter_read_seq"] if role == "owner" else room["owner_read_seq"]
    return {
        "id": str(room["id"]), "listing_id": str(room["listing_id"]), "listing_title": room.get("listing_title"),
        "owner_id": str(room["owner_id"]), "renter_id": str(room["renter_id"]),
        "rental_id": str(room["rental_id"]) if room["rental_id"] else None, "role": role,
        "last_seq": room["last_seq"],
        "read_seq": own_read if role != "moderator" else None,
        "other_read_seq": other_read if role != "moderator" else None,
        "unread": room["last_seq"] - own_read if role != "moderator" else 0,
        "last_message_at": room["last_message_at"].isoformat() if room["last_message_at"] else None,
        "last_preview": room["last_preview"],
        "channel": f"chat:{room['id']}",
    }


def message_view(row: dict[str, Any]) -> dict[str, Any]:
    created = row["created_at"]
    return {"seq": row["seq"], "sender_id": str(row["sender_id"]) if row["sender_id"] else None,
            "client_msg_id": row["client_msg_id"], "kind": row["kind"], "body": row["body"], "data": row["data"],
            "created_at": created if isinstance(created, str) else created.isoformat()}


async def room_for(platform: Platform, claims: AccessClaims, room_id: uuid.UUID) -> tuple[dict[str, Any], str]:
    room = await store.get_room(platform.db, room_id)
    role = viewer_role(room, claims) if room else None
    if room is None or role is None:
        raise not_found("chat")
    return room, role


async def open_room(platform: Platform, claims: AccessClaims, listing_id: uuid.UUID,
                    command_id: uuid.UUID | None = None) -> tuple[dict[str, Any], bool]:
    """The caller's room about a listing (created on first ask); (room view, created). The room's
    id is derived from (listing, renter), so asking twice never makes two rooms; a `command_id`
    (from an Idempotency-Key) also makes a retry answer `created` as the first ask did."""
    listing = await listing_store.get_listing(platform.db, listing_id)
    if listing is None or (listing["status"] != "published" and listing["owner_id"] != claims.user_id):
        raise not_found("listing")
    if listing["owner_id"] == claims.user_id:
        raise ApiError(422, "own_listing", "You cannot start a chat about your own listing.")
    room_id = derive_room_id(listing_id, claims.user_id)
    result = await execute_as(
        platform, CHAT, room_id, "open",
        {"listing_id": str(listing_id), "owner_id": str(listing["owner_id"]), "renter_id": str(claims.user_id)},
        actor_id=str(claims.user_id), actor_roles=claims.roles, command_id=command_id,
    )
    room, role = await room_for(platform, claims, room_id)
    return room_view(room, role), bool(result.reply.get("created"))


async def send_message(  # noqa: PLR0917 - the socket and REST call it alike, positionally
        platform: Platform, claims: AccessClaims, room_id: uuid.UUID, client_msg_id: str, text: str,
        attachments: list[str] | None = None,
) -> dict[str, Any]:
    """The stored message; the same `client_msg_id` again returns the first one, stored once."""
    payload: dict[str, Any] = {"client_msg_id": client_msg_id, "text": text}
    if attachments:
        payload["attachments"] = attachments
    result = await execute_as(platform, CHAT, room_id, "send", payload, actor_id=str(claims.user_id),
                              actor_roles=claims.roles,
                              command_id=send_command_id(room_id, claims.user_id, client_msg_id))
    message: dict[str, Any] = result.reply["message"]
    return message


async def mark_read(platform: Platform, claims: AccessClaims, room_id: uuid.UUID, up_to: int) -> dict[str, Any]:
    result = await execute_as(platform, CHAT, room_id, "read", {"up_to": up_to}, actor_id=str(claims.user_id),
                              actor_roles=claims.roles)
    reply = result.reply
    return {"room_id": str(room_id), "read_seq": reply["read_seq"], "unread": reply["last_seq"] - reply["read_seq"]}


async def publish_typing(platform: Platform, claims: AccessClaims, room_id: uuid.UUID) -> None:
    """Tell the room's other watchers the caller is typing (only a party may)."""
    _, role = await room_for(platform, claims, room_id)
    if role == "moderator":
        raise ApiError(403, "forbidden", "Moderators read chats but do not write in them.")
    if platform.nats is not None:
        signal = {"type": "typing", "channel": f"chat:{room_id}", "user_id": str(claims.user_id)}
        await platform.nats.publish(EPHEMERAL_SUBJECT.format(room_id=room_id), orjson.dumps(signal))

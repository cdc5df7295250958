"""The chat room entity: one room per (listing, renter), owned by the shard actors like listings.

The room is the inquiry before a booking and the rentals' room after it, so the history of a
pair never splits; its id is derived from the pair (`room_id`), which makes "open" idempotent and
lets the rental consumer find the room from a rental event alone. One command at a time per room
gives every message its place (`seq` 1, 2, 3 …) without a database sequence; a send's command id is
derived from (room, sender, client_msg_id) by the caller, so a retried send returns the first
message instead of storing a second (the runtime keeps each command's first result).

Commands: `open` (renter or system), `send` (a party), `system` (the runtime's consumers: a
rental's transition as a system message; creates the room if needed), `read` (a party moves its
"read up to" marker forward)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from actors.commands import Command
from actors.entity import Decision, Event, Rejected, VersionConflict
from storage import chats as chat_store

KIND = "chat"
# Room ids are uuid5(namespace, "<listing id>:<renter id>").
ROOM_NAMESPACE = uuid.UUID("6a1f1c2e-3b7d-5e0a-9c44-5348415448ab")
MAX_TEXT_CHARS = 4000
MAX_ATTACHMENTS = 10
PREVIEW_CHARS = 140


def room_id(listing_id: str | uuid.UUID, renter_id: str | uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(ROOM_NAMESPACE, f"{listing_id}:{renter_id}")


def send_command_id(room: str | uuid.UUID, sender_id: str | uuid.UUID, client_msg_id: str) -> uuid.UUID:
    """The same client message id from the same sender in the same room is the same command."""
    return uuid.uuid5(ROOM_NAMESPACE, f"send:{room}:{sender_id}:{client_msg_id}")


@dataclass(frozen=True)
class Message:
    seq: int
    sender_id: str | None
    client_msg_id: str | None
    kind: str  # "text" | "system"
    body: str
    data: dict[str, Any]
    created_at: datetime

    def wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "sender_id": self.sender_id, "client_msg_id": self.client_msg_id,
                "kind": self.kind, "body": self.body, "data": self.data, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class ChatRoom:
    id: str
    listing_id: str
    owner_id: str
    renter_id: str
    rental_id: str | None = None
    last_seq: int = 0
    owner_read_seq: int = 0
    renter_read_seq: int = 0
    last_message_at: datetime | None = None
    last_preview: str | None = None
    # Set by the decision that adds them: what `save_group` must insert besides the room row.
    new_messages: tuple[Message, ...] = ()

    def role_of(self, user_id: str | None) -> str | None:
        if user_id == self.owner_id:
            return "owner"
        if user_id == self.renter_id:
            return "renter"
        return None

    def with_read(self, role: str, seq: int) -> ChatRoom:
        if role == "owner":
            return dataclasses.replace(self, owner_read_seq=seq)
        return dataclasses.replace(self, renter_read_seq=seq)

    def read_seq(self, role: str) -> int:
        return self.owner_read_seq if role == "owner" else self.renter_read_seq

    def summary(self) -> dict[str, Any]:
        return {"room_id": self.id, "last_seq": self.last_seq, "owner_read_seq": self.owner_read_seq,
                "renter_read_seq": self.renter_read_seq}


def _now() -> datetime:
    return datetime.now(UTC)


def _is_system(command: Command) -> bool:
    return "system" in command.actor_roles


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise Rejected(422, "validation_failed", "text must be a string.")
    stripped = text.strip()
    if not stripped:
        raise Rejected(422, "empty_message", "A message needs some text.")
    if len(stripped) > MAX_TEXT_CHARS:
        raise Rejected(422, "message_too_long", f"A message has at most {MAX_TEXT_CHARS} characters.")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in stripped):
        raise Rejected(422, "validation_failed", "text must not contain control characters.")
    return stripped


def _check_attachments(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        raise Rejected(422, "validation_failed", f"attachments is a list of at most {MAX_ATTACHMENTS} media ids.")
    try:
        return [str(uuid.UUID(str(item))) for item in raw]
    except ValueError:
        raise Rejected(422, "validation_failed", "Each attachment is a media id (a UUID).") from None


class ChatKind:
    name = KIND

    def decide(self, state: ChatRoom | None, command: Command) -> Decision:
        handler = {"open": self._open, "send": self._send, "system": self._system, "read": self._read}.get(command.name)
        if handler is None:
            raise Rejected(400, "unknown_command", f"Chat rooms do not understand {command.name!r}.")
        return handler(state, command)

    # ------------------------------------------------------------------ commands

    @staticmethod
    def _new_room(command: Command) -> ChatRoom:
        payload = command.payload
        listing_id, owner_id, renter_id = (str(payload.get(k, "")) for k in ("listing_id", "owner_id", "renter_id"))
        try:
            derived = room_id(uuid.UUID(listing_id), uuid.UUID(renter_id))
            uuid.UUID(owner_id)
        except ValueError:
            raise Rejected(422, "validation_failed", "A room needs listing_id, owner_id and renter_id.") from None
        if str(derived) != command.entity_id:
            raise Rejected(422, "validation_failed", "The room id does not belong to this listing and renter.")
        if owner_id == renter_id:
            raise Rejected(422, "own_listing", "You cannot start a chat about your own listing.")
        rental_id = payload.get("rental_id")
        return ChatRoom(id=command.entity_id, listing_id=listing_id, owner_id=owner_id, renter_id=renter_id,
                        rental_id=str(rental_id) if rental_id else None)

    def _open(self, state: ChatRoom | None, command: Command) -> Decision:
        if state is not None:
            if state.role_of(command.actor_id) is None and not _is_system(command):
                raise Rejected(404, "not_found", "No such chat.")
            return Decision(state=state, changed=False, reply={**state.summary(), "created": False})
        room = self._new_room(command)
        if not _is_system(command) and command.actor_id != room.renter_id:
            raise Rejected(403, "forbidden", "Only the renter opens a chat about a listing.")
        return Decision(state=room, events=[Event("opened", {"listing_id": room.listing_id, "owner_id": room.owner_id,
                                                             "renter_id": room.renter_id})],
                        reply={**room.summary(), "created": True})

    def _send(self, state: ChatRoom | None, command: Command) -> Decision:
        if state is None:
            raise Rejected(404, "not_found", "No such chat.")
        role = state.role_of(command.actor_id)
        if role is None:
            if {"moderator", "admin"} & command.actor_roles:
                raise Rejected(403, "forbidden", "Moderators read chats but do not write in them.")
            raise Rejected(404, "not_found", "No such chat.")
        client_msg_id = command.payload.get("client_msg_id")
        if not isinstance(client_msg_id, str) or not 1 <= len(client_msg_id) <= 64:
            raise Rejected(422, "validation_failed", "client_msg_id is a string of 1-64 characters.")
        text = _check_text(command.payload.get("text"))
        attachments = _check_attachments(command.payload.get("attachments"))
        message = Message(seq=state.last_seq + 1, sender_id=command.actor_id, client_msg_id=client_msg_id,
                          kind="text", body=text, data={"attachments": attachments} if attachments else {},
                          created_at=_now())
        # Replying means having read what came before: the sender's marker moves to its message.
        return self._append(state.with_read(role, message.seq), message, text)

    def _system(self, state: ChatRoom | None, command: Command) -> Decision:
        if not _is_system(command):
            raise Rejected(403, "forbidden", "System messages come from the platform only.")
        room = state if state is not None else self._new_room(command)
        body, data = str(command.payload.get("body", "")), command.payload.get("data") or {}
        if not body or not isinstance(data, dict):
            raise Rejected(422, "validation_failed", "A system message needs a body code and data.")
        rental_id = command.payload.get("rental_id")
        if rental_id:
            room = dataclasses.replace(room, rental_id=str(rental_id))
        message = Message(seq=room.last_seq + 1, sender_id=None, client_msg_id=None, kind="system", body=body,
                          data=data, created_at=_now())
        preview = str((data.get("text") or {}).get("ru", body)) if isinstance(data.get("text"), dict) else body
        decision = self._append(room, message, preview)
        if state is None:  # the room starts with this message
            opened = Event("opened", {"listing_id": room.listing_id, "owner_id": room.owner_id,
                                      "renter_id": room.renter_id})
            decision = dataclasses.replace(decision, events=[opened, *decision.events])
        return decision

    @staticmethod
    def _append(state: ChatRoom, message: Message, preview: str) -> Decision:
        new = dataclasses.replace(state, last_seq=message.seq, last_message_at=message.created_at,
                                  last_preview=preview[:PREVIEW_CHARS], new_messages=(message,))
        wire = message.wire()
        return Decision(state=new, events=[Event("message_sent", {"message": wire, **_parties(new)})],
                        reply={"message": wire, **new.summary()})

    def _read(self, state: ChatRoom | None, command: Command) -> Decision:
        if state is None:
            raise Rejected(404, "not_found", "No such chat.")
        role = state.role_of(command.actor_id)
        if role is None:
            # Staff see the room (so "no such chat" would be untrue) but keep no read marker in it.
            if {"moderator", "admin"} & command.actor_roles:
                raise Rejected(403, "forbidden", "Moderators read chats but keep no read marker in them.")
            raise Rejected(404, "not_found", "No such chat.")
        up_to = command.payload.get("up_to")
        if not isinstance(up_to, int) or isinstance(up_to, bool) or up_to < 0:
            raise Rejected(422, "validation_failed", "up_to is a message seq (a non-negative integer).")
        target = min(up_to, state.last_seq)  # never past the last message
        if target <= state.read_seq(role):  # markers only move forward; an old one is no change
            return Decision(state=state, changed=False, reply={**state.summary(), "read_seq": state.read_seq(role)})
        new = dataclasses.replace(state.with_read(role, target), new_messages=())
        return Decision(state=new, events=[Event("read", {"user_id": command.actor_id, "read_seq": target,
                                                          **_parties(new)})],
                        reply={**new.summary(), "read_seq": target})

    # ------------------------------------------------------------------ storage

    async def load(self, conn: asyncpg.Connection, entity_id: str) -> tuple[ChatRoom, int] | None:
        row = await chat_store.load_room(conn, uuid.UUID(entity_id))
        if row is None:
            return None
        room = ChatRoom(
            id=str(row["id"]), listing_id=str(row["listing_id"]), owner_id=str(row["owner_id"]),
            renter_id=str(row["renter_id"]), rental_id=str(row["rental_id"]) if row["rental_id"] else None,
            last_seq=row["last_seq"], owner_read_seq=row["owner_read_seq"], renter_read_seq=row["renter_read_seq"],
            last_message_at=row["last_message_at"], last_preview=row["last_preview"],
        )
        return room, row["version"]

    async def save_group(self, conn: asyncpg.Connection, chains: dict[str, list[tuple[ChatRoom, int]]]) -> None:
        messages: list[dict[str, Any]] = []
        for chain in chains.values():
            final, expected = chain[-1][0], chain[0][1]
            row = _room_row(final)
            version = expected + len(chain)
            stored = (await chat_store.insert_room(conn, row, version) if expected == 0
                      else await chat_store.update_room(conn, row, expected, version))
            if not stored:
                raise VersionConflict
            messages += [_message_row(final.id, m) for state, _ in chain for m in state.new_messages]
        await chat_store.insert_messages(conn, messages)


def _parties(room: ChatRoom) -> dict[str, str]:
    """Chat events name the room's parties, so consumers (notifications) need no lookup."""
    return {"listing_id": room.listing_id, "owner_id": room.owner_id, "renter_id": room.renter_id}


def _room_row(room: ChatRoom) -> dict[str, Any]:
    return {
        "id": uuid.UUID(room.id), "listing_id": uuid.UUID(room.listing_id), "owner_id": uuid.UUID(room.owner_id),
        "renter_id": uuid.UUID(room.renter_id), "rental_id": uuid.UUID(room.rental_id) if room.rental_id else None,
        "last_seq": room.last_seq, "owner_read_seq": room.owner_read_seq, "renter_read_seq": room.renter_read_seq,
        "last_message_at": room.last_message_at, "last_preview": room.last_preview,
    }


def _message_row(room: str, message: Message) -> dict[str, Any]:
    return {"room_id": uuid.UUID(room), "seq": message.seq,
            "sender_id": uuid.UUID(message.sender_id) if message.sender_id else None,
            "client_msg_id": message.client_msg_id, "kind": message.kind, "body": message.body,
            "data": message.data, "created_at": message.created_at}


CHAT = ChatKind()

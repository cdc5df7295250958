"""The websocket protocol on the wire: what a client may send (parsed and validated here) and
what the server sends (encoded here to bytes, once per message however many sockets get it).

Every message is a JSON object in a text frame with a `type`; a client message may carry an
`id` (a string of up to 64 characters) that the answer to it echoes. When a client lags, the
server puts several messages in one frame separated by "\\n" (JSON never contains a raw newline),
so a client splits every frame on "\\n". api/asyncapi.yaml documents all of it, and
tests/unit/test_ws_protocol_contract.py keeps the two in step."""

from __future__ import annotations

import re
import struct
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from actors.chat import MAX_ATTACHMENTS, MAX_TEXT_CHARS
from gateway.bodies import validation_error
from gateway.chat_schemas import ClientMessageId
from sharehub.errors import ApiError

_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
CHANNEL_PATTERN = rf"^(?:(?:listing|rental|chat):{_UUID}|user:me)$"
CHAT_CHANNEL_PATTERN = rf"^chat:{_UUID}$"
_CHANNEL_RE = re.compile(CHANNEL_PATTERN)
MAX_SEQ = 2**53  # the largest integer every JSON client reads exactly

# ------------------------------------------------------------------------------------- channels


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A channel a client named: `kind` and `entity_id` address its events (the NATS subject
    `<kind>.<entity_id>.<type>` and the outbox rows), `name` is how the client calls it (ids in
    canonical lowercase; a user's own channel is `user:me`)."""

    kind: str
    entity_id: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.entity_id


def parse_channel(raw: str, user_id: uuid.UUID) -> ChannelRef | None:
    if not _CHANNEL_RE.match(raw):
        return None
    kind, _, ident = raw.partition(":")
    if kind == "user":
        return ChannelRef("user", str(user_id), "user:me")
    entity_id = str(uuid.UUID(ident))
    return ChannelRef(kind, entity_id, f"{kind}:{entity_id}")


# ------------------------------------------------------------------------------ client messages

MessageId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ChannelName = Annotated[str, StringConstraints(max_length=64, pattern=CHANNEL_PATTERN)]
ChatChannel = Annotated[str, StringConstraints(max_length=64, pattern=CHAT_CHANNEL_PATTERN)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
MediaId = Annotated[str, StringConstraints(pattern=rf"^{_UUID}$")]


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    type: str
    id: MessageId | None = None


class Subscribe(ClientMessage):
    type: Literal["subscribe"]
    channel: ChannelName
    since: Seq | None = None
    epoch: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None


class Unsubscribe(ClientMessage):
    type: Literal["unsubscribe"]
    channel: ChannelName


class Ping(ClientMessage):
    type: Literal["ping"]


class Send(ClientMessage):
    type: Literal["send"]
    channel: ChatChannel
    client_msg_id: ClientMessageId
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    attachments: Annotated[list[MediaId], Field(max_length=MAX_ATTACHMENTS)] = Field(default_factory=list)


class Read(ClientMessage):
    type: Literal["read"]
    channel: ChatChannel
    up_to: Seq


class Typing(ClientMessage):
    type: Literal["typing"]
    channel: ChatChannel


CLIENT_MESSAGES: dict[str, type[ClientMessage]] = {
    "subscribe": Subscribe, "unsubscribe": Unsubscribe, "ping": Ping, "send": Send, "read": Read, "typing": Typing,
}


def invalid_message(detail: str) -> ApiError:
    return ApiError(400, "invalid_message", detail)


def message_id(obj: Any) -> str | None:
    """The `id` to echo, when the message has a usable one (also for a message refused later)."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return None


def decode(raw: bytes | str) -> dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_message("A message is a JSON object in a text frame.") from None
    if not isinstance(obj, dict):
        raise invalid_message("A message is a JSON object in a text frame.")
    return obj


def validate(obj: dict[str, Any]) -> ClientMessage:
    kind = obj.get("type")
    model = CLIENT_MESSAGES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise invalid_message(f"Unknown message type; one of: {', '.join(CLIENT_MESSAGES)}.")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise validation_error(exc, location="message") from None


# ------------------------------------------------------------------------------ server messages

SERVER_TYPES = frozenset({"subscribed", "unsubscribed", "event", "resync", "presence", "typing", "reply", "error",
                          "pong"})
dumps = orjson.dumps


def _with_id(message: dict[str, Any], msg_id: str | None) -> bytes:
    if msg_id is not None:
        message["id"] = msg_id
    return dumps(message)


def subscribed(channel: str, epoch: str, seq: int, msg_id: str | None = None) -> bytes:
    return _with_id({"type": "subscribed", "channel": channel, "epoch": epoch, "seq": seq}, msg_id)


def unsubscribed(channel: str, msg_id: str | None = None) -> bytes:
    return _with_id({"type": "unsubscribed", "channel": channel}, msg_id)


def pong(msg_id: str | None = None) -> bytes:
    return _with_id({"type": "pong"}, msg_id)


def resync(channel: str, epoch: str, seq: int, msg_id: str | None = None) -> bytes:
    return _with_id({"type": "resync", "channel": channel, "epoch": epoch, "seq": seq}, msg_id)


def event_object(channel: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A stored/published event (storage.runtime.add_outbox_events) as a client sees it."""
    return {"type": "event", "channel": channel, "seq": payload["seq"], "epoch": payload["epoch"],
            "event": payload["type"], "data": payload["data"], "occurred_at": payload["occurred_at"]}


def event(channel: str, payload: dict[str, Any]) -> bytes:
    return dumps(event_object(channel, payload))


def presence(channel: str, user_id: str, online: bool) -> bytes:
    return dumps({"type": "presence", "channel": channel, "user_id": user_id, "online": online})


def typing(channel: str, user_id: str) -> bytes:
    return dumps({"type": "typing", "channel": channel, "user_id": user_id})


def reply(data: Any, msg_id: str | None = None) -> bytes:
    return _with_id({"type": "reply", "data": data}, msg_id)


def error(code: str, detail: str | None, msg_id: str | None = None,
          errors: list[dict[str, Any]] | None = None) -> bytes:
    message: dict[str, Any] = {"type": "error", "code": code, "detail": detail or code}
    if errors:
        message["errors"] = errors
    return _with_id(message, msg_id)


def api_error(exc: ApiError, msg_id: str | None = None) -> bytes:
    """An ApiError (what REST answers with a problem document) as an `error` message."""
    errors = exc.extra.get("errors")
    return error(exc.code, exc.detail, msg_id, errors if isinstance(errors, list) else None)


# ------------------------------------------------------------------------------------- framing

# A frame of coalesced messages stays below this unless one message alone is larger.
MAX_FRAME_BYTES = 64 * 1024


def text_frame(message: bytes) -> bytes:
    """The whole websocket frame of one text message as a server sends it (final, unmasked,
    uncompressed): built once per broadcast, the same bytes are written to every socket."""
    size = len(message)
    if size < 126:
        return bytes((0x81, size)) + message
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + message
    return struct.pack("!BBQ", 0x81, 127, size) + message


def frames(messages: list[bytes], max_bytes: int = MAX_FRAME_BYTES) -> list[bytes]:
    """Queued messages as few text frames as possible, each at most `max_bytes` (a larger single
    message travels alone), joined by "\\n" in order."""
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for message in messages:
        if batch and size + 1 + len(message) > max_bytes:
            out.append(b"\n".join(batch))
            batch, size = [], 0
        size += len(message) + (1 if batch else 0)
        batch.append(message)
    if batch:
        out.append(batch[0] if len(batch) == 1 else b"\n".join(batch))
    return out

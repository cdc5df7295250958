"""What the server does with each message a client sends over its socket.

Messages of one socket are handled one at a time, in order (the socket's reading task awaits
each), so a client's `subscribe` is answered before its next message is read. Anything refused
is answered with an `error` carrying the same code REST would use; the socket stays open.

Two limits apply to each message. The socket's own token bucket (gateway/realtime/limits.py)
absorbs bursts and disconnects the abusive, in memory. Then every command that makes the
platform work - `subscribe`, `unsubscribe`, `send`, `read` and a `typing` that is forwarded - is
counted against the user's API budget in Redis, the same one REST requests spend
(`rl:api` `user:<id>`), so opening sockets is no way around it (one INCR round trip per
command). Not counted: `ping`, answered from memory with nothing shared touched (a keepalive
must not spend the budget, nor cost a Redis round trip), and a `typing` the 2-second throttle
drops anyway. When Redis is down a command is answered `redis_unavailable`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from gateway import chat_actions
from gateway.realtime import protocol
from gateway.realtime.access import authorize
from gateway.realtime.connection import CLOSE_TOO_MANY_MESSAGES, Connection
from gateway.realtime.hub import Hub
from gateway.realtime.limits import Verdict
from gateway.realtime.protocol import ClientMessage, Ping, Read, Send, Subscribe, Typing, Unsubscribe
from sharehub.errors import ApiError, rate_limited
from sharehub.outages import outage_error, outage_of
from sharehub.ratelimit import api_budget

log = logging.getLogger(__name__)

# Typing signals are best effort: at most one per socket this often, the rest dropped silently.
TYPING_INTERVAL_SECS = 2.0


async def handle(hub: Hub, conn: Connection, raw: bytes | str) -> None:
    max_bytes = hub.platform.settings.ws_max_message_bytes
    if len(raw) > max_bytes:
        conn.send(protocol.error("message_too_large", f"A message has at most {max_bytes} bytes."))
        return
    msg_id: str | None = None
    try:
        obj = protocol.decode(raw)
        msg_id = protocol.message_id(obj)
        verdict = conn.budget.take(time.monotonic())
        if verdict is Verdict.ABUSIVE:
            conn.close(CLOSE_TOO_MANY_MESSAGES, "too many messages")
            return
        if verdict is Verdict.LIMITED:
            conn.send(protocol.error("rate_limited", "Too many messages; slow down.", msg_id))
            return
        message = protocol.validate(obj)
        if _costs_work(conn, message):
            await _spend_budget(hub, conn)
        await _HANDLERS[message.type](hub, conn, message)
    except ApiError as exc:
        conn.send(protocol.api_error(exc, msg_id))
    except Exception as exc:
        dependency = outage_of(exc)
        if dependency is not None:  # redis_unavailable, database_unavailable...: an outage, not a bug
            log.warning("%s unavailable: %s", dependency, type(exc).__name__)
            conn.send(protocol.api_error(outage_error(dependency), msg_id))
            return
        log.exception("websocket message failed", extra={"user_id": str(conn.claims.user_id)})
        conn.send(protocol.error("internal_error", "Something went wrong on our side.", msg_id))


def _costs_work(conn: Connection, message: ClientMessage) -> bool:
    """Whether the message counts against the user's API budget (see the module docstring)."""
    if isinstance(message, Ping):
        return False
    if isinstance(message, Typing):
        return time.monotonic() - conn.typing_at >= TYPING_INTERVAL_SECS
    return True


async def _spend_budget(hub: Hub, conn: Connection) -> None:
    settings = hub.platform.settings
    wait = await api_budget(hub.platform.redis, settings.api_requests_per_minute).hit(f"user:{conn.claims.user_id}")
    if wait is not None:
        raise rate_limited(wait, "Your request budget is spent; slow down.")


def _channel(conn: Connection, name: str) -> protocol.ChannelRef:
    ref = protocol.parse_channel(name, conn.claims.user_id)
    assert ref is not None  # the message model checked the name
    return ref


async def _subscribe(hub: Hub, conn: Connection, message: ClientMessage) -> None:
    assert isinstance(message, Subscribe)
    ref = _channel(conn, message.channel)
    grant = await authorize(hub.platform, conn.claims, ref)
    await hub.subscribe(conn, ref, grant, since=message.since, epoch=message.epoch, msg_id=message.id)


async def _unsubscribe(hub: Hub, conn: Connection, message: ClientMessage) -> None:
    assert isinstance(message, Unsubscribe)
    ref = _channel(conn, message.channel)
    await hub.unsubscribe(conn, ref.name)
    conn.send(protocol.unsubscribed(ref.name, message.id))


async def _ping(hub: Hub, conn: Connection, message: ClientMessage) -> None:
    assert isinstance(message, Ping)
    conn.send(protocol.pong(message.id))


async def _send(hub: Hub, conn: Connection, message: ClientMessage) -> None:
    assert isinstance(message, Send)
    room_id = uuid.UUID(_channel(conn, message.channel).entity_id)
    sent = await chat_actions.send_message(hub.platform, conn.claims, room_id, message.client_msg_id, message.text,
                                           list(message.attachments))
    conn.send(protocol.reply(sent, message.id))


async def _read(hub: Hub, conn: Connection, message: ClientMessage) -> None:
    assert isinstance(message, Read)
    room_id = uuid.UUID(_channel(conn, message.channel).entity_id)
    marker = await chat_actions.mark_read(hub.platform, conn.claims, room_id, message.up_to)
    conn.send(protocol.reply(marker, message.id))


async def _typing(hub: Hub, conn: Connection, message: ClientMessage) -> None:
    assert isinstance(message, Typing)
    now = time.monotonic()
    if now - conn.typing_at < TYPING_INTERVAL_SECS:
        return
    conn.typing_at = now
    room_id = uuid.UUID(_channel(conn, message.channel).entity_id)
    await chat_actions.publish_typing(hub.platform, conn.claims, room_id)


_HANDLERS: dict[str, Callable[[Hub, Connection, ClientMessage], Awaitable[None]]] = {
    "subscribe": _subscribe, "unsubscribe": _unsubscribe, "ping": _ping, "send": _send, "read": _read,
    "typing": _typing,
}

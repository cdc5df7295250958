"""`GET /ws` (the socket) and its REST fallback `GET /api/v1/channels/{channel}/events`."""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal

from aiohttp import WSMessage, WSMsgType, web
from aiohttp.http_websocket import WSMessageTextBytes
from pydantic import BaseModel, ConfigDict, Field

from gateway.bodies import query_params
from gateway.context import platform, principal
from gateway.realtime import protocol, session
from gateway.realtime.access import authorize, for_audience
from gateway.realtime.connection import CLOSE_TIMEOUT_SECS, Connection
from gateway.realtime.handshake import BEARER_PROTOCOL, authenticate, check_origin, subprotocol_token
from gateway.realtime.hub import Hub
from gateway.responses import json_response
from gateway.routing import AUTHENTICATED, PUBLIC_IDENTIFIED, RouteTable
from sharehub import presence
from sharehub.errors import ApiError
from sharehub.security.tokens import AccessClaims
from storage import channels as history

routes = RouteTable()
HUB = web.AppKey("realtime_hub", Hub)

# Server pings (with jitter, so sockets opened together do not ping together); a client that
# does not answer within half the interval is dropped.
HEARTBEAT_SECS = (25.0, 35.0)
# Frames up to this many times the message limit are read and answered with `message_too_large`;
# larger ones are refused by the frame parser before they are read (close 1009).
_FRAME_LIMIT_FACTOR = 4
# Retry-After of a socket refused for the per-user cap: a slot frees when the user closes a
# socket (or, for a socket of a gateway that died, when its presence entry lapses: 45 s at most).
SOCKET_CAP_RETRY_SECS = 10


@routes.get("/ws", access=PUBLIC_IDENTIFIED, socket=True)
async def websocket(request: web.Request) -> web.StreamResponse:
    ws, claims, slot = await _accept(request)
    hub = request.app[HUB]
    conn = Connection(ws, request.transport, claims, platform(request).settings.ws_send_queue)
    conn.conn_id = slot.connection_id  # the socket is already counted in presence under this id
    try:
        await hub.attach(conn, first=slot.first)
        while not conn.closing and await _receive(hub, conn, await ws.receive()):
            pass
    finally:
        await hub.detach(conn)  # frees the slot, whatever happened after the upgrade
    return ws


async def _accept(request: web.Request) -> tuple[web.WebSocketResponse[Literal[False]], AccessClaims,
                                                 presence.Slot]:
    """Authenticate, take one of the user's socket slots and upgrade; refusals are problem
    documents. (A function of its own so that nothing of the handshake - the token, the header
    parts - stays referenced by the socket's long-lived handler frame: idle sockets are what a
    process holds by the thousand.)"""
    plat = platform(request)
    settings = plat.settings
    check_origin(request)
    offered, token = subprotocol_token(request)
    claims = await authenticate(request, token)
    ws: web.WebSocketResponse[Literal[False]] = web.WebSocketResponse(
        protocols=(BEARER_PROTOCOL,) if offered else (),
        heartbeat=random.uniform(*HEARTBEAT_SECS),  # noqa: S311 - jitter, not a secret
        compress=settings.ws_compress,
        max_msg_size=settings.ws_max_message_bytes * _FRAME_LIMIT_FACTOR,
        timeout=CLOSE_TIMEOUT_SECS,
        decode_text=False,
    )
    if not ws.can_prepare(request).ok:
        error = ApiError(426, "upgrade_required", "Open this URL as a websocket.")
        error.headers.update({"Upgrade": "websocket", "Connection": "Upgrade"})
        raise error
    # Counted (atomically, across every gateway) before the 101, so a refusal is a plain 429.
    slot = await presence.reserve(plat.redis, claims.user_id, settings.ws_sockets_per_user)
    if slot is None:
        error = ApiError(429, "too_many_sockets",
                         f"A user has at most {settings.ws_sockets_per_user} sockets open; close one first.",
                         retry_after=SOCKET_CAP_RETRY_SECS)
        error.headers["Retry-After"] = str(SOCKET_CAP_RETRY_SECS)
        raise error
    try:
        await ws.prepare(request)
    except BaseException:
        # The socket never opened: nothing will detach it, so its slot is given back here.
        await presence.mark_offline(plat.redis, claims.user_id, slot.connection_id)
        raise
    # The 101's headers (security headers included) are sent; an idle socket should not keep
    # ~2 KiB of them for hours.
    ws.headers.clear()
    return ws, claims, slot


async def _receive(hub: Hub, conn: Connection, message: WSMessage | WSMessageTextBytes) -> bool:
    """Handle one frame; False when the socket is done. (The frame is not kept while idle.)"""
    if message.type is WSMsgType.TEXT:
        await session.handle(hub, conn, message.data)
    elif message.type is WSMsgType.BINARY:
        conn.send(protocol.error("invalid_message", "Send JSON in text frames."))
    else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. an oversized frame: aiohttp closed with 1009)
        return False
    return True


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: Annotated[int, Field(ge=0, le=protocol.MAX_SEQ)] | None = None
    epoch: Annotated[str, Field(min_length=1, max_length=32)] | None = None


@routes.get("/api/v1/channels/{channel}/events", access=AUTHENTICATED)
async def channel_events(request: web.Request) -> web.Response:
    """For clients that cannot hold a socket: what a `subscribe` with `since` would replay."""
    plat, claims = platform(request), principal(request)
    ref = protocol.parse_channel(request.match_info["channel"], claims.user_id)
    if ref is None:
        raise ApiError(422, "validation_failed", "Unknown channel.", errors=[
            {"path": "/channel", "code": "string_pattern_mismatch",
             "message": "listing:<id>, rental:<id>, chat:<id> or user:me"}])
    query = query_params(request, EventsQuery)
    grant = await authorize(plat, claims, ref)
    if query.since is None:
        epoch, head = await history.head(plat.db, ref.kind, ref.entity_id)
        return json_response({"channel": ref.name, "epoch": epoch, "seq": head, "events": [], "complete": True})
    replay = await history.replay(plat.db, ref.kind, ref.entity_id, query.since, query.epoch)
    events: list[dict[str, Any]] = []
    for payload in replay.events:
        seen = for_audience(payload, grant.audience)
        if seen is not None:
            events.append(protocol.event_object(ref.name, seen))
    return json_response({"channel": ref.name, "epoch": replay.epoch, "seq": replay.head, "events": events,
                          "complete": replay.complete})

"""/api/v1/chats: a renter's inquiry about a listing and the pair's rental room, over REST.

Every action here is also a websocket message (gateway/realtime); both go through
gateway/chat_actions.py. A room exists only for its two parties and moderators (read-only);
everyone else gets 404."""

from __future__ import annotations

from aiohttp import web

from actors.chat import KIND as CHAT
from actors.chat import room_id
from gateway import chat_actions as chats
from gateway.bodies import path_uuid, query_params, read_body
from gateway.chat_schemas import ChatsQuery, MessagesQuery, NewMessage, OpenChat, ReadMarker
from gateway.context import platform, principal
from gateway.entities import request_command_id
from gateway.responses import json_response
from gateway.routing import AUTHENTICATED, RouteTable
from storage import chats as store

routes = RouteTable()


@routes.get("/api/v1/chats", access=AUTHENTICATED)
async def list_chats(request: web.Request) -> web.Response:
    query = query_params(request, ChatsQuery)
    claims = principal(request)
    db = platform(request).db
    rows = await store.list_rooms(db, claims.user_id, limit=query.limit, before=query.before)
    items = [chats.room_view(row, chats.viewer_role(row, claims) or "renter") for row in rows]
    last = rows[-1] if len(rows) == query.limit else None
    next_before = (last["last_message_at"] or last["created_at"]).isoformat() if last else None
    return json_response({"items": items, "total_unread": await store.total_unread(db, claims.user_id),
                          "next_before": next_before})


@routes.post("/api/v1/chats", access=AUTHENTICATED, idempotent=True)
async def open_chat(request: web.Request) -> web.Response:
    body = await read_body(request, OpenChat)
    claims = principal(request)
    command_id = request_command_id(request, CHAT, room_id(body.listing_id, claims.user_id), "open")
    view, created = await chats.open_room(platform(request), claims, body.listing_id, command_id)
    headers = {"Location": f"/api/v1/chats/{view['id']}"}
    return json_response(view, status=201 if created else 200, headers=headers)


@routes.get("/api/v1/chats/{chat_id}", access=AUTHENTICATED)
async def get_chat(request: web.Request) -> web.Response:
    room, role = await chats.room_for(platform(request), principal(request), path_uuid(request, "chat_id"))
    return json_response(chats.room_view(room, role))


@routes.get("/api/v1/chats/{chat_id}/messages", access=AUTHENTICATED)
async def list_messages(request: web.Request) -> web.Response:
    room_id = path_uuid(request, "chat_id")
    query = query_params(request, MessagesQuery)
    await chats.room_for(platform(request), principal(request), room_id)
    rows = await store.messages(platform(request).db, room_id, before=query.before, limit=query.limit)
    has_more = len(rows) == query.limit and rows[-1]["seq"] > 1
    return json_response({"items": [chats.message_view(row) for row in rows],
                          "next_before": rows[-1]["seq"] if has_more else None})


@routes.post("/api/v1/chats/{chat_id}/messages", access=AUTHENTICATED)
async def send_message(request: web.Request) -> web.Response:
    room_id = path_uuid(request, "chat_id")
    body = await read_body(request, NewMessage)
    message = await chats.send_message(platform(request), principal(request), room_id, body.client_msg_id,
                                       body.text, [str(a) for a in body.attachments])
    return json_response(message, status=201)


@routes.post("/api/v1/chats/{chat_id}/read", access=AUTHENTICATED)
async def mark_read(request: web.Request) -> web.Response:
    room_id = path_uuid(request, "chat_id")
    body = await read_body(request, ReadMarker)
    return json_response(await chats.mark_read(platform(request), principal(request), room_id, body.up_to))


@routes.post("/api/v1/chats/{chat_id}/typing", access=AUTHENTICATED)
async def typing(request: web.Request) -> web.Response:
    await chats.publish_typing(platform(request), principal(request), path_uuid(request, "chat_id"))
    return web.Response(status=204)

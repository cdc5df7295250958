"""/api/v1/notifications: the caller's in-app notifications (made by sharehub/notifications from
domain events), newest first, and marking them read. Someone else's notification is 404, like
one that does not exist."""

from __future__ import annotations

from aiohttp import web

from gateway.bodies import path_uuid, query_params
from gateway.context import platform, principal
from gateway.notification_schemas import NotificationsQuery, decode_cursor, encode_cursor
from gateway.responses import json_response
from gateway.routing import AUTHENTICATED, RouteTable
from sharehub.errors import not_found
from sharehub.notifications import inbox

routes = RouteTable()


@routes.get("/api/v1/notifications", access=AUTHENTICATED)
async def list_notifications(request: web.Request) -> web.Response:
    query = query_params(request, NotificationsQuery)
    items, after, unread = await inbox.page(
        platform(request).db, principal(request).user_id, unread_only=query.unread,
        before=decode_cursor(query.before) if query.before else None, limit=query.limit)
    return json_response({"items": items, "unread_count": unread,
                          "next_before": encode_cursor(after) if after else None})


@routes.post("/api/v1/notifications/read-all", access=AUTHENTICATED)
async def mark_all_read(request: web.Request) -> web.Response:
    updated = await inbox.mark_all_read(platform(request).db, principal(request).user_id)
    return json_response({"updated": updated})


@routes.post("/api/v1/notifications/{notification_id}/read", access=AUTHENTICATED)
async def mark_read(request: web.Request) -> web.Response:
    notification_id = path_uuid(request, "notification_id")
    found = await inbox.mark_read(platform(request).db, principal(request).user_id, notification_id)
    if found is None:
        raise not_found("notification")
    return json_response(found)

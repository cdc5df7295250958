"""/api/v1/admin: account administration (admins), user lookup (moderators too)."""

from __future__ import annotations

from aiohttp import web

from gateway.bodies import path_uuid, read_body
from gateway.context import platform, principal
from gateway.responses import json_response
from gateway.routing import RouteTable, any_role
from gateway.schemas import CreateUserBody, RolesBody, StatusBody
from gateway.serializers import user_private
from sharehub import accounts

routes = RouteTable()
ADMIN = any_role("admin")


@routes.post("/api/v1/admin/users", access=ADMIN, idempotent=True)
async def create_user(request: web.Request) -> web.Response:
    body = await read_body(request, CreateUserBody)
    user = await accounts.create_user(
        platform(request), email=body.email, password=body.password,
        display_name=body.display_name, roles=frozenset(body.roles),
    )
    return json_response(user_private(user), status=201, headers={"Location": f"/api/v1/admin/users/{user.id}"})


@routes.get("/api/v1/admin/users/{user_id}", access=any_role("admin", "moderator"))
async def get_user(request: web.Request) -> web.Response:
    user = await accounts.get_user_or_404(platform(request), path_uuid(request, "user_id"))
    return json_response(user_private(user))


@routes.put("/api/v1/admin/users/{user_id}/roles", access=ADMIN)
async def set_roles(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    body = await read_body(request, RolesBody)
    user = await accounts.set_roles(platform(request), principal(request), user_id, frozenset(body.roles))
    return json_response(user_private(user))


@routes.put("/api/v1/admin/users/{user_id}/status", access=ADMIN)
async def set_status(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    body = await read_body(request, StatusBody)
    user = await accounts.set_status(platform(request), principal(request), user_id, body.status)
    return json_response(user_private(user))

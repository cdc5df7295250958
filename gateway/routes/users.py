"""/api/v1/users: the caller's own account and public profiles."""

from __future__ import annotations

from aiohttp import web

from gateway.bodies import path_uuid, read_body
from gateway.context import platform, principal
from gateway.responses import json_response
from gateway.routing import AUTHENTICATED, PUBLIC, RouteTable
from gateway.schemas import PasswordChangeBody, ProfilePatch
from gateway.serializers import user_private, user_public
from sharehub import accounts
from sharehub.errors import ApiError, not_found

routes = RouteTable()


@routes.get("/api/v1/users/me", access=AUTHENTICATED)
async def get_me(request: web.Request) -> web.Response:
    user = await accounts.get_user_or_404(platform(request), principal(request).user_id)
    return json_response(user_private(user))


@routes.patch("/api/v1/users/me", access=AUTHENTICATED)
async def patch_me(request: web.Request) -> web.Response:
    body = await read_body(request, ProfilePatch)
    # Only fields the client sent; an explicit null clears the phone and nothing else.
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    nulls = [name for name, value in changes.items() if value is None and name != "phone"]
    if nulls:
        raise ApiError(422, "validation_failed", "These fields cannot be null.", errors=[
            {"path": f"/{name}", "code": "not_nullable", "message": "Cannot be null"} for name in nulls
        ])
    user = await accounts.update_profile(platform(request), principal(request), changes)
    return json_response(user_private(user))


@routes.post("/api/v1/users/me/password", access=AUTHENTICATED)
async def change_password(request: web.Request) -> web.Response:
    body = await read_body(request, PasswordChangeBody)
    pair = await accounts.change_password(
        platform(request), principal(request),
        current_password=body.current_password, new_password=body.new_password,
    )
    return json_response(pair.as_json())


@routes.get("/api/v1/users/{user_id}", access=PUBLIC)
async def get_user(request: web.Request) -> web.Response:
    user = await accounts.get_user_or_404(platform(request), path_uuid(request, "user_id"))
    if user.status != "active":
        raise not_found("user")
    return json_response(user_public(user))

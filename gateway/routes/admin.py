"""/api/v1/admin: account administration (admins), user lookup (moderators too), failed durable
timers (admins)."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.bodies import path_uuid, query_params, read_body
from gateway.context import platform, principal
from gateway.responses import json_response
from gateway.routing import RouteTable, any_role
from gateway.schemas import CreateUserBody, RolesBody, StatusBody
from gateway.serializers import user_private
from gateway.timer_views import timer_view
from sharehub import accounts
from sharehub.errors import ApiError
from storage import timers as timer_store

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


class FailedTimersQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # dead: gave up, waits for an admin; live: failed before and will be tried again.
    state: Literal["dead", "live"] = "dead"
    kind: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


@routes.get("/api/v1/admin/timers", access=ADMIN)
async def failed_timers(request: web.Request) -> web.Response:
    query = query_params(request, FailedTimersQuery)
    rows = await timer_store.list_failed(platform(request).db, state=query.state, kind=query.kind,
                                         limit=query.limit, offset=query.offset)
    return json_response({"items": [timer_view(r) for r in rows], "limit": query.limit, "offset": query.offset})


@routes.post("/api/v1/admin/timers/{timer_id}/retry", access=ADMIN)
async def retry_timer(request: web.Request) -> web.Response:
    """Re-arm a failed timer once its cause is fixed: the owning shard fires it on its next poll."""
    row = await timer_store.rearm(platform(request).db, path_uuid(request, "timer_id"))
    if row is None:
        raise ApiError(404, "timer_not_found", "No failed timer has this id (it fired, was cancelled or "
                       "re-set by its entity, or never failed).")
    return json_response(timer_view(row))

"""/api/v1/auth: registration, login, token refresh, logout, the caller's logins."""

from __future__ import annotations

from aiohttp import web

from gateway.bodies import path_uuid, read_body
from gateway.context import client_ip, platform, principal
from gateway.responses import json_response, no_content
from gateway.routing import AUTHENTICATED, PUBLIC, RouteTable
from gateway.schemas import LoginBody, PasswordResetBody, PasswordResetConfirmBody, RefreshBody, RegisterBody
from gateway.serializers import user_private
from sharehub import accounts, password_reset
from storage.sessions import list_active_sessions

routes = RouteTable()


@routes.post("/api/v1/auth/register", access=PUBLIC, idempotent=True)
async def register(request: web.Request) -> web.Response:
    body = await read_body(request, RegisterBody)
    user = await accounts.register(
        platform(request), email=body.email, password=body.password, display_name=body.display_name
    )
    return json_response(user_private(user), status=201, headers={"Location": f"/api/v1/users/{user.id}"})


@routes.post("/api/v1/auth/login", access=PUBLIC)
async def login(request: web.Request) -> web.Response:
    body = await read_body(request, LoginBody)
    pair = await accounts.login(
        platform(request), email=body.email, password=body.password,
        ip=client_ip(request), user_agent=request.headers.get("User-Agent", ""),
    )
    return json_response(pair.as_json())


@routes.post("/api/v1/auth/refresh", access=PUBLIC)
async def refresh(request: web.Request) -> web.Response:
    body = await read_body(request, RefreshBody)
    pair = await accounts.refresh(platform(request), refresh_token=body.refresh_token)
    return json_response(pair.as_json())


@routes.post("/api/v1/auth/password-reset", access=PUBLIC)
async def request_password_reset(request: web.Request) -> web.Response:
    body = await read_body(request, PasswordResetBody)
    await password_reset.request_reset(platform(request), email=body.email, ip=client_ip(request))
    # The same answer whether or not the account exists.
    return json_response({"detail": "If an account uses this e-mail, a reset link is on its way."}, status=202)


@routes.post("/api/v1/auth/password-reset/confirm", access=PUBLIC)
async def confirm_password_reset(request: web.Request) -> web.Response:
    body = await read_body(request, PasswordResetConfirmBody)
    await password_reset.confirm_reset(platform(request), token=body.token, new_password=body.new_password)
    return no_content()


@routes.post("/api/v1/auth/logout", access=AUTHENTICATED)
async def logout(request: web.Request) -> web.Response:
    await accounts.logout(platform(request), principal(request))
    return no_content()


@routes.get("/api/v1/auth/sessions", access=AUTHENTICATED)
async def list_sessions(request: web.Request) -> web.Response:
    caller = principal(request)
    rows = await list_active_sessions(platform(request).db, caller.user_id)
    return json_response({
        "items": [
            {
                "id": str(row.id),
                "current": row.id == caller.session_id,
                "created_at": row.created_at.isoformat(),
                "last_refreshed_at": row.last_refreshed_at.isoformat(),
                "expires_at": row.expires_at.isoformat(),
                "user_agent": row.user_agent,
                "ip": row.ip,
            }
            for row in rows
        ]
    })


@routes.delete("/api/v1/auth/sessions/{session_id}", access=AUTHENTICATED)
async def revoke_session(request: web.Request) -> web.Response:
    session_id = path_uuid(request, "session_id")
    await accounts.revoke_own_session(platform(request), principal(request), session_id)
    return no_content()

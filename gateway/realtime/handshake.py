"""Who opens a socket, decided before the upgrade (a refusal is a normal problem+json answer).

Browsers cannot set headers on a websocket, so the access token may come as the subprotocol
pair `Sec-WebSocket-Protocol: bearer, <token>` (the server answers with protocol `bearer`);
`Authorization: Bearer` works for everyone else, and `?access_token=` is the last resort (query
strings end up in proxy logs). `Origin`, which browsers always send, must be allow-listed (or
this host): a page on another site must not ride on a user's token."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.context import platform
from gateway.middleware import bearer_token, identify
from sharehub.errors import forbidden, unauthorized
from sharehub.security.tokens import AccessClaims

BEARER_PROTOCOL = "bearer"


def check_origin(request: web.Request) -> None:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or origin in platform(request).settings.cors_origins:
        return
    if urlsplit(origin).netloc.lower() == request.host.lower():
        return
    raise forbidden("This origin may not open a websocket.")


def subprotocol_token(request: web.Request) -> tuple[bool, str | None]:
    """(the client offered the `bearer` subprotocol, the token that follows it)."""
    offered = [part.strip() for part in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(",")]
    if BEARER_PROTOCOL not in offered:
        return False, None
    position = offered.index(BEARER_PROTOCOL) + 1
    return True, offered[position] if position < len(offered) and offered[position] else None


async def authenticate(request: web.Request, offered_token: str | None) -> AccessClaims:
    # The socket route bypasses the auth middleware (gateway/middleware.py `_serve_socket`):
    # the subprotocol, then the Authorization header, then the query parameter.
    token = offered_token or bearer_token(request) or request.query.get("access_token") or None
    if token is None:
        raise unauthorized(detail="Send the access token as `Sec-WebSocket-Protocol: bearer, <token>`, "
                                  "`Authorization: Bearer <token>` or `?access_token=`.")
    return await identify(request, token)

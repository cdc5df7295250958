"""Typed access to what the app and each request carry."""

from __future__ import annotations

from aiohttp import web

from sharehub.errors import unauthorized
from sharehub.platform import Platform
from sharehub.security.tokens import AccessClaims

PLATFORM = web.AppKey("platform", Platform)
REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL = web.RequestKey("principal", AccessClaims)


def platform(request: web.Request) -> Platform:
    return request.app[PLATFORM]


def principal(request: web.Request) -> AccessClaims:
    """The authenticated caller; the auth middleware has already refused anonymous requests to
    routes that need one, so this only fails on a programming error."""
    claims = request.get(PRINCIPAL)
    if claims is None:
        raise unauthorized()
    return claims


def client_ip(request: web.Request) -> str:
    if platform(request).settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        # The right-most entry is the one our own proxy appended; the rest is client-supplied.
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    return request.remote or "unknown"

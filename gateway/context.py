"""Typed access to what the app and each request carry."""

from __future__ import annotations

import ipaddress

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
    claims: AccessClaims | None = request.get(PRINCIPAL)
    if claims is None:
        raise unauthorized()
    return claims


def _valid_ip(raw: str) -> str | None:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None


def client_ip(request: web.Request) -> str:
    """The caller's address, always a valid IP ("0.0.0.0" when the transport has none)."""
    if platform(request).settings.trust_forwarded_for:
        # The right-most entry is the one our own proxy appended; the rest is client-supplied.
        forwarded = _valid_ip(request.headers.get("X-Forwarded-For", "").split(",")[-1])
        if forwarded:
            return forwarded
    return _valid_ip(request.remote or "") or "0.0.0.0"  # noqa: S104 - a value, not a bind address

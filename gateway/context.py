"""Typed access to what the app and each request carry."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from aiohttp import web

from sharehub.errors import unauthorized
from sharehub.platform import Platform
from sharehub.security.tokens import AccessClaims

# Ids derived from an Idempotency-Key live in their own UUIDv5 namespace.
_IDEMPOTENT_IDS = uuid.UUID("5b0f3e52-6f4e-4d1a-9c57-2f1f8d3a7c11")


@dataclass(frozen=True)
class IdempotencyContext:
    """The Idempotency-Key a request runs under: (caller scope, key, hash of the request)."""

    scope: str
    key: str
    request_hash: str

    def derive(self, *parts: str) -> uuid.UUID:
        """The same id for every retry of this request (same caller, key and body) and for no
        other request: what a creating route names its new entity and command with, so a retry
        after a lost answer finds the first outcome instead of creating a second thing."""
        return uuid.uuid5(_IDEMPOTENT_IDS, "\n".join((self.scope, self.key, self.request_hash, *parts)))


PLATFORM = web.AppKey("platform", Platform)
REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL = web.RequestKey("principal", AccessClaims)
IDEMPOTENCY = web.RequestKey("idempotency", IdempotencyContext)


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

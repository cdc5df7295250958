"""Cross-cutting request handling, outermost first:

1. `observe`      - request id, structured access log, metrics, in-flight gauge.
2. `problems`     - every error becomes application/problem+json; nothing leaks internals.
3. `cors`         - preflight answers for allow-listed origins.
4. `authenticate` - bearer token -> principal; route access policy enforced (RBAC).
5. `rate_limit`   - coarse per-client request budget.
6. `idempotency`  - Idempotency-Key replay and derived ids (its own module, gateway/idempotency.py).
Security headers are set on every response in `on_response_prepare`."""

from __future__ import annotations

import logging
import re
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.context import PRINCIPAL, REQUEST_ID, client_ip, platform
from gateway.metrics import HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS
from gateway.responses import problem_response
from gateway.routing import is_static, spec_for
from sharehub.errors import ApiError, forbidden, rate_limited, unauthorized
from sharehub.logs import request_id_var
from sharehub.outages import outage_error, outage_of
from sharehub.ratelimit import api_budget
from sharehub.revocation import check_not_revoked
from sharehub.security.tokens import AccessClaims, TokenInvalid

log = logging.getLogger("sharehub.gateway")
access_log = logging.getLogger("sharehub.access")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and metrics skip the Redis budget: they must answer while Redis is down. /readyz has a
# limit of its own, kept in the process (gateway/routes/health.py).
_UNMETERED = frozenset({"/healthz", "/readyz", "/metrics"})


def _route_label(request: web.Request) -> str:
    if request.match_info.http_exception is not None:
        return "unmatched"
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID_RE.match(incoming) else secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    # A websocket's handler returns when the socket closes: its lifetime is not a request's
    # latency, and open sockets have their own gauge (gateway/realtime/metrics.py).
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if not upgrade:
        HTTP_IN_FLIGHT.inc()
    status = 500
    try:
        spec = spec_for(request) if upgrade else None
        if spec is not None and spec.socket:
            response = await _serve_socket(request, spec.handler)
        else:
            response = await handler(request)
        status = response.status
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        if not upgrade:
            HTTP_IN_FLIGHT.dec()
            HTTP_LATENCY.labels(request.method, route).observe(elapsed)
        principal = request.get(PRINCIPAL)
        access_log.info(
            "websocket closed" if upgrade else "request",
            extra={
                "method": request.method, "path": request.path, "route": route, "status": status,
                "duration_ms": round(elapsed * 1000, 2), "remote": request.remote,
                "user_id": str(principal.user_id) if principal else None,
            },
        )
        request_id_var.reset(token)


async def _serve_socket(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A websocket skips the rest of the chain: each middleware's suspended frame would live as
    long as the socket (~0.6 KiB each, times every idle socket). Its handler authenticates
    itself (gateway/realtime/handshake.py); here it gets what it still needs of the chain - the
    request rate limit on the handshake and refusals as problem documents."""
    try:
        await _meter(request)
        return await handler(request)
    except ApiError as error:
        return problem_response(error, request)
    except Exception as exc:
        return problem_response(await unexpected_error(request, exc), request)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return problem_response(error, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(_from_http_exception(exc), request)
    except Exception as exc:
        return problem_response(await unexpected_error(request, exc), request)


async def unexpected_error(request: web.Request, exc: Exception) -> ApiError:
    """A dependency that is down is a 503 with its own code (and the pool drops connections the
    dead server left behind, so none of them fails a request after it returns); anything else
    is a bug: logged with its traceback, answered 500 without internals."""
    dependency = outage_of(exc)
    if dependency is None:
        log.exception("unhandled error", extra={"path": request.path})
        return ApiError(500, "internal_error", "Something went wrong on our side.")
    log.warning("%s unavailable: %s", dependency, type(exc).__name__, extra={"path": request.path})
    if dependency == "database":
        await platform(request).db.expire_connections()
    return outage_error(dependency)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    codes = {
        404: ("not_found", "No such resource."),
        405: ("method_not_allowed", "This method is not allowed here."),
        413: ("payload_too_large", "The request body is too large."),
    }
    code, detail = codes.get(exc.status, ("http_error", exc.reason))
    error = ApiError(exc.status, code, detail)
    if exc.status == 405 and "Allow" in exc.headers:
        error.headers["Allow"] = exc.headers["Allow"]
    return error


def _cors_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    return origin if origin and origin in platform(request).settings.cors_origins else None


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        origin = _cors_origin(request)
        if origin is None:
            raise forbidden("This origin may not call the API.")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, X-Request-ID",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )
    return await handler(request)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("token_malformed", "Use `Authorization: Bearer <access token>`.")
    return token.strip()


async def identify(request: web.Request, token: str) -> AccessClaims:
    """The caller behind an access token (signature, expiry, revocation), remembered on the
    request; 401 when the token is not valid."""
    plat = platform(request)
    try:
        claims = plat.tokens.verify_access(token)
        await check_not_revoked(plat, claims)
    except TokenInvalid as exc:
        raise unauthorized(exc.code, "The access token is not valid.") from exc
    request[PRINCIPAL] = claims
    return claims


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    spec = spec_for(request)
    if spec is None:
        if request.match_info.http_exception is not None or is_static(request):
            return await handler(request)
        # check_route_policies makes this unreachable; deny rather than serve an undeclared route.
        raise ApiError(500, "internal_error", "Route has no access policy.")
    try:
        token = bearer_token(request) if spec.access.authenticated or spec.access.identify else None
        if token is None and spec.access.authenticated:
            raise unauthorized()
        claims = await identify(request, token) if token is not None else None
    except ApiError as error:
        if error.status == 401:
            await _meter_failed_authentication(request)
        raise
    if claims is None:
        return await handler(request)
    if spec.access.roles and not (spec.access.roles & claims.roles):
        raise forbidden("Your role does not allow this.")
    return await handler(request)


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _UNMETERED or is_static(request):
        return await handler(request)
    await _meter(request)
    return await handler(request)


async def _meter(request: web.Request) -> None:
    """Count the request against its caller's budget (user, else address); 429 when spent."""
    plat = platform(request)
    principal = request.get(PRINCIPAL)
    subject = f"user:{principal.user_id}" if principal else f"ip:{client_ip(request)}"
    wait = await api_budget(plat.redis, plat.settings.api_requests_per_minute).hit(subject)
    if wait is not None:
        raise rate_limited(wait)


async def _meter_failed_authentication(request: web.Request) -> None:
    """A request refused with 401 never reaches `rate_limit`; without this, guessing tokens
    would be the one unmetered thing on the API. It counts against the address's budget, as
    an anonymous request would, and once that is spent the answer is 429 instead of 401.
    (A websocket handshake is metered by address before it authenticates: `_serve_socket`.)"""
    plat = platform(request)
    wait = await api_budget(plat.redis, plat.settings.api_requests_per_minute).hit(f"ip:{client_ip(request)}")
    if wait is not None:
        raise rate_limited(wait)


_API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "geolocation=(), camera=(), microphone=()"
    headers["Content-Security-Policy"] = _DOCS_CSP if request.path.startswith("/docs") else _API_CSP
    if request.path.startswith("/api/v1/"):
        # Private data and tokens: no shared or browser caches unless a handler says otherwise.
        headers.setdefault("Cache-Control", "no-store")
    request_id = request.get(REQUEST_ID)
    if request_id:
        headers["X-Request-ID"] = request_id
    # No product or version banner: aiohttp would otherwise announce itself and Python's version.
    headers["Server"] = "sharehub"
    origin = _cors_origin(request)
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After, Idempotent-Replayed"
        headers["Vary"] = "Origin"

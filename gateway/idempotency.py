"""`Idempotency-Key` on the POSTs that create something or move a listing or rental a step.

Stripe's rules (SQL in storage/idempotency.py): the first request with a key claims it and runs;
its response is stored - client errors too - and the same request again gets it replayed
(`Idempotent-Replayed: true`); another request under the key is 422; one still running is 409.

Storing the answer is not enough when the answer is lost - a 503 while the entity still commits,
a dropped connection. So the handler names what it creates and the command it sends after
(caller, key, request hash) (gateway/context.py `IdempotencyContext`): the retry finds the first
outcome instead of creating a second thing. A request that failed on our side leaves the key
reopened for that same request (a different one still gets 422).

Recording the outcome must not depend on the database being up at that instant: when it is not,
the request still answers as it would have (a 201 stays a 201), and the outcome is recorded in
the background as soon as the database answers - otherwise the client's retries would meet 409
`idempotency_request_in_progress` until the claim's lock lapsed."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.context import IDEMPOTENCY, PRINCIPAL, IdempotencyContext, client_ip, platform
from gateway.responses import problem_response
from gateway.routing import spec_for
from sharehub.errors import ApiError
from sharehub.outages import outage_of
from sharehub.platform import Platform
from storage import idempotency as store

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
# A stored response, or None: the request failed on our side and may run again.
Outcome = tuple[int, bytes] | None


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    spec = spec_for(request)
    key = request.headers.get("Idempotency-Key")
    if spec is None or not spec.idempotent or key is None:
        return await handler(request)
    if not _KEY_RE.match(key):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters.")
    principal = request.get(PRINCIPAL)
    scope = f"user:{principal.user_id}" if principal else f"anon:{client_ip(request)}"
    body = await request.read()
    operation = f"{request.method} {request.path}"
    request_hash = hashlib.sha256(operation.encode() + b"\n" + body).hexdigest()
    plat = platform(request)
    existing = await store.claim_key(plat.db, scope=scope, key=key, operation=operation, request_hash=request_hash)
    if existing is not None:
        if existing.request_hash != request_hash:
            raise ApiError(422, "idempotency_key_reused", "This Idempotency-Key was used with a different request.")
        if existing.state != "done" or existing.response_status is None:
            raise ApiError(409, "idempotency_request_in_progress",
                           "A request with this Idempotency-Key is still being processed.")
        return web.Response(
            status=existing.response_status, body=existing.response_body,
            content_type="application/problem+json" if existing.response_status >= 400 else "application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    request[IDEMPOTENCY] = IdempotencyContext(scope, key, request_hash)
    try:
        response = await handler(request)
    except ApiError as error:
        if error.status >= 500:
            await _record(plat, scope, key, None)
            raise
        rendered = problem_response(error, request)
        await _record(plat, scope, key, (error.status, bytes(rendered.body)))  # type: ignore[arg-type]
        return rendered
    except BaseException:
        await _record(plat, scope, key, None)
        raise
    outcome: Outcome = None
    if isinstance(response, web.Response) and response.status < 500 and response.body is not None:
        outcome = (response.status, bytes(response.body))  # type: ignore[arg-type]
    await _record(plat, scope, key, outcome)
    return response


async def _write(plat: Platform, scope: str, key: str, outcome: Outcome) -> None:
    if outcome is None:
        await store.reopen_key(plat.db, scope=scope, key=key)
    else:
        await store.complete_key(plat.db, scope=scope, key=key, status=outcome[0], body=outcome[1])


async def _record(plat: Platform, scope: str, key: str, outcome: Outcome) -> None:
    """Store the outcome under the key now - or, with the database away, as soon as it is back."""
    try:
        await _write(plat, scope, key, outcome)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        log.warning("Idempotency-Key outcome kept for later: %s", type(exc).__name__)
        task = asyncio.get_running_loop().create_task(_record_when_back(plat, scope, key, outcome))
        _pending.add(task)
        task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()
_RETRY_EVERY_SECS = 0.25


async def _record_when_back(plat: Platform, scope: str, key: str, outcome: Outcome) -> None:
    # Only while the claim is still this request's: once it lapses another request may hold the key.
    deadline = time.monotonic() + store.IN_PROGRESS_LOCK_SECS
    while time.monotonic() < deadline:
        await asyncio.sleep(_RETRY_EVERY_SECS)
        try:
            await _write(plat, scope, key, outcome)
        except Exception as exc:
            if outage_of(exc) is None:
                log.exception("recording an Idempotency-Key outcome failed")
                return
            continue
        return

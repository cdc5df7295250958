"""Probes and metrics: /healthz (the process is up), /readyz (its dependencies answer), /metrics.

/readyz is public and asks Postgres, Redis, NATS and Ray; answered fresh for every call, a flood
of it would be a flood on all four. So each process checks at most once a second
(`Readiness`: the answer is kept for `READY_CACHE_SECS`, and callers that come while a check
runs wait for that same check), and each client address gets `readyz_per_ip_per_minute` of
them. That limit is counted in the process, not in Redis like the API budget: readyz must
still answer - 503 - when Redis is down, and a probe is aimed at one process anyway (the
kubelet probes each pod), so a per-process count is the right one."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

from gateway.context import client_ip, platform
from gateway.responses import json_response
from gateway.routing import PUBLIC, RouteTable
from sharehub.errors import rate_limited
from sharehub.platform import Platform
from sharehub.ratelimit import LocalTokenBuckets

routes = RouteTable()
_CHECK_TIMEOUT_SECS = 2.0
READY_CACHE_SECS = 1.0

READINESS_CHECKS = Counter("readiness_checks_total",
                           "Dependency checks /readyz ran (calls within a second of one share its answer)")


@routes.get("/healthz", access=PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _postgres(plat: Platform) -> None:
    await plat.db.fetchval("SELECT 1")


async def _redis(plat: Platform) -> None:
    await plat.redis.ping()


async def _nats(plat: Platform) -> None:
    if plat.nats is None or not plat.nats.is_connected:
        raise ConnectionError("not connected")
    await plat.nats.flush(timeout=int(_CHECK_TIMEOUT_SECS))


async def _ray(plat: Platform) -> None:
    import ray

    if not ray.is_initialized():
        raise ConnectionError("not connected")
    await asyncio.to_thread(ray.cluster_resources)


_CHECKS: dict[str, Callable[[Platform], Awaitable[None]]] = {
    "postgres": _postgres, "redis": _redis, "nats": _nats, "ray": _ray,
}


async def _run_check(name: str, plat: Platform) -> tuple[str, dict[str, object]]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(_CHECKS[name](plat), _CHECK_TIMEOUT_SECS)
    except Exception as exc:  # any failure means "not ready", reported by type only
        return name, {"ok": False, "error": type(exc).__name__}
    return name, {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def _check_all(plat: Platform) -> dict[str, dict[str, object]]:
    READINESS_CHECKS.inc()
    return dict(await asyncio.gather(*(_run_check(name, plat) for name in _CHECKS)))


class Readiness:
    """One app's readiness: the last answer (for `READY_CACHE_SECS`), the check in flight, and
    the per-address limit."""

    def __init__(self, plat: Platform) -> None:
        self.platform = plat
        self.limits = LocalTokenBuckets(plat.settings.readyz_per_ip_per_minute)
        self._answer: tuple[float, dict[str, dict[str, object]]] | None = None
        self._running: asyncio.Task[dict[str, dict[str, object]]] | None = None

    async def checks(self) -> dict[str, dict[str, object]]:
        loop = asyncio.get_running_loop()
        if self._answer is not None and loop.time() - self._answer[0] < READY_CACHE_SECS:
            return self._answer[1]
        if self._running is None:
            self._running = loop.create_task(self._check())
        # Shielded: a caller that goes away does not cancel the check the others wait for.
        return await asyncio.shield(self._running)

    async def _check(self) -> dict[str, dict[str, object]]:
        try:
            checks = await _check_all(self.platform)
            # Kept from when the check finished: an answer is never older than READY_CACHE_SECS.
            self._answer = (asyncio.get_running_loop().time(), checks)
            return checks
        finally:
            self._running = None


# Per app (each has its own platform), created on the first call: an app is frozen once it
# serves, and this module cannot add startup hooks to the app it is installed in.
_READINESS: weakref.WeakKeyDictionary[web.Application, Readiness] = weakref.WeakKeyDictionary()


def _readiness(request: web.Request) -> Readiness:
    readiness = _READINESS.get(request.app)
    if readiness is None:
        readiness = _READINESS[request.app] = Readiness(platform(request))
    return readiness


@routes.get("/readyz", access=PUBLIC)
async def readyz(request: web.Request) -> web.Response:
    readiness = _readiness(request)
    wait = readiness.limits.take(client_ip(request), time.monotonic())
    if wait is not None:
        raise rate_limited(wait, "Too many readiness checks from this address; try again later.")
    checks = await readiness.checks()
    ready = all(check["ok"] for check in checks.values())
    body: dict[str, Any] = {"status": "ok" if ready else "unavailable", "checks": checks}
    return json_response(body, status=200 if ready else 503)


@routes.get("/metrics", access=PUBLIC)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

"""Probes and metrics: /healthz (the process is up), /readyz (its dependencies answer), /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from gateway.context import platform
from gateway.responses import json_response
from gateway.routing import PUBLIC, RouteTable
from sharehub.platform import Platform

routes = RouteTable()
_CHECK_TIMEOUT_SECS = 2.0


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


@routes.get("/readyz", access=PUBLIC)
async def readyz(request: web.Request) -> web.Response:
    plat = platform(request)
    checks = dict(await asyncio.gather(*(_run_check(name, plat) for name in _CHECKS)))
    ready = all(check["ok"] for check in checks.values())
    return json_response({"status": "ok" if ready else "unavailable", "checks": checks},
                         status=200 if ready else 503)


@routes.get("/metrics", access=PUBLIC)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

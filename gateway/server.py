"""One gateway process: connect to the services named in the environment and serve HTTP.

`sharehub gateway` runs this (containers, Kubernetes, and the children of `sharehub run`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

from aiohttp import web

from actors.relay import ensure_stream, run_relay
from gateway.app import build_app
from sharehub.cluster import connect_ray
from sharehub.config import Settings
from sharehub.consumers import run_consumers
from sharehub.event_consumers import all_consumers
from sharehub.logs import configure_logging
from sharehub.platform import open_platform
from sharehub.workers import run_background_workers

log = logging.getLogger(__name__)
_SHUTDOWN_DEADLINE_SECS = 20.0


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    async with open_platform(settings) as platform:
        app = build_app(platform)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port, reuse_port=reuse_port, backlog=1024)
        await site.start()
        log.info("gateway listening", extra={"host": settings.http_host, "port": settings.http_port})
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        if platform.search is not None and settings.gateway_starts_search:
            _ensure_search_replicas(settings)
        workers = [asyncio.create_task(run_background_workers(platform, stopping))]
        if platform.nats is not None:
            js = platform.nats.jetstream()
            await ensure_stream(js)
            workers.append(asyncio.create_task(run_relay(platform.db, js, stopping)))
            # Domain-event consumers: one durable JetStream consumer each, shared by all gateways.
            workers.append(asyncio.create_task(run_consumers(js, all_consumers(platform), stopping)))
        try:
            await stopping.wait()
        finally:
            log.info("gateway stopping")
            _exit_if_stuck()
            await runner.cleanup()
            await asyncio.gather(*workers)


def _ensure_search_replicas(settings: Settings) -> None:
    from search.replica_actor import ensure_replicas

    assert settings.database_url and settings.nats_url
    ensure_replicas(settings.search_replicas, data_dir=settings.data_dir / "search",
                    database_url=settings.database_url, nats_url=settings.nats_url)


def _exit_if_stuck() -> None:
    """Graceful shutdown gets a deadline (like Kubernetes' grace period): if closing connections
    to a vanished dependency hangs, the process still exits."""
    timer = threading.Timer(_SHUTDOWN_DEADLINE_SECS, os._exit, args=(1,))
    timer.daemon = True
    timer.start()


def run_gateway(settings: Settings, *, reuse_port: bool = False) -> None:
    configure_logging(settings.log_level)
    if settings.ray_address:
        # Before the event loop starts, on the main thread: Ray installs signal handlers there.
        connect_ray(settings.ray_address)
    try:
        import uvloop

        uvloop.run(serve(settings, reuse_port=reuse_port))
    except ImportError:  # Windows has no uvloop; asyncio's loop works, only slower
        asyncio.run(serve(settings, reuse_port=reuse_port))

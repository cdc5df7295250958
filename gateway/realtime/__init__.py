"""The websocket gateway: live channels over one socket per client (`GET /ws`).

`protocol` is the wire format, `handshake` who may connect, `access` who may watch what,
`channel` exact ordered delivery per channel, `hub` the process's channels, NATS subscriptions,
presence and timer loop, `connection` one socket's queue and writer, `session` what each client
message does, `routes` the HTTP side. The protocol is documented in api/asyncapi.yaml."""

from __future__ import annotations

from aiohttp import web

from gateway.realtime.hub import Hub
from gateway.realtime.routes import HUB, routes
from sharehub.platform import Platform

__all__ = ["install", "routes"]


def install(app: web.Application, platform: Platform) -> None:
    """Give the app its hub, started with the app and stopped with it (sockets first)."""
    hub = Hub(platform)
    app[HUB] = hub

    async def start(_: web.Application) -> None:
        hub.start()

    async def close_sockets(_: web.Application) -> None:
        await hub.shutdown()

    async def stop(_: web.Application) -> None:
        await hub.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(stop)

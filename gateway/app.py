"""Builds the aiohttp application: middlewares, routes, signals."""

from __future__ import annotations

from aiohttp import web

from gateway import realtime
from gateway.context import PLATFORM
from gateway.idempotency import idempotency
from gateway.metrics import unwatch_pool, watch_pool
from gateway.middleware import authenticate, cors, observe, problems, rate_limit, security_headers
from gateway.routes import admin, auth, chats, docs, health, listings, ml, notifications, rentals, search, users
from gateway.routing import RouteTable, check_route_policies, install_routes
from sharehub.platform import Platform

ROUTE_TABLES: list[RouteTable] = [
    health.routes, docs.routes, auth.routes, users.routes, admin.routes, listings.routes, rentals.routes, chats.routes,
    notifications.routes, search.routes, ml.routes, realtime.routes,
]


def build_app(platform: Platform, *, extra_tables: list[RouteTable] | None = None) -> web.Application:
    app = web.Application(
        middlewares=[observe, problems, cors, authenticate, rate_limit, idempotency],
        client_max_size=platform.settings.max_body_bytes,
        handler_args={"max_field_size": 16384},
    )
    app[PLATFORM] = platform
    install_routes(app, ROUTE_TABLES + (extra_tables or []))
    check_route_policies(app)
    app.on_response_prepare.append(security_headers)
    realtime.install(app, platform)
    watch_pool(platform.db)

    async def _unwatch(_: web.Application) -> None:
        unwatch_pool(platform.db)

    app.on_cleanup.append(_unwatch)
    return app

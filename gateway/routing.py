"""The route table: every route declares who may call it, in one place.

`Access` is required by `RouteTable.add`, so a route cannot be declared without one; and
`check_route_policies` refuses to start an app that has a route added around the table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Access:
    """PUBLIC: anyone; PUBLIC_IDENTIFIED: anyone, but a sent token is checked and used (what a
    listing shows depends on who asks); AUTHENTICATED: any logged-in user; roles: one of them."""

    authenticated: bool
    roles: frozenset[str] = frozenset()
    identify: bool = False

    def describe(self) -> str:
        if not self.authenticated:
            return "public"
        return "roles:" + ",".join(sorted(self.roles)) if self.roles else "authenticated"


PUBLIC = Access(authenticated=False)
PUBLIC_IDENTIFIED = Access(authenticated=False, identify=True)
AUTHENTICATED = Access(authenticated=True)


def any_role(*roles: str) -> Access:
    return Access(authenticated=True, roles=frozenset(roles))


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    access: Access
    # POSTs that create something honour Idempotency-Key.
    idempotent: bool = False
    # A websocket: after the upgrade it lives for hours, so it bypasses the per-request
    # middlewares (gateway/middleware.py `observe`) and authenticates itself.
    socket: bool = False


@dataclass
class RouteTable:
    routes: list[RouteSpec] = field(default_factory=list)
    statics: list[tuple[str, Path]] = field(default_factory=list)

    def add(self, method: str, path: str, *, access: Access, idempotent: bool = False,
            socket: bool = False) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            self.routes.append(RouteSpec(method, path, handler, access, idempotent, socket))
            return handler

        return decorator

    def get(self, path: str, *, access: Access, socket: bool = False) -> Callable[[Handler], Handler]:
        return self.add("GET", path, access=access, socket=socket)

    def post(self, path: str, *, access: Access, idempotent: bool = False) -> Callable[[Handler], Handler]:
        return self.add("POST", path, access=access, idempotent=idempotent)

    def put(self, path: str, *, access: Access) -> Callable[[Handler], Handler]:
        return self.add("PUT", path, access=access)

    def patch(self, path: str, *, access: Access) -> Callable[[Handler], Handler]:
        return self.add("PATCH", path, access=access)

    def delete(self, path: str, *, access: Access) -> Callable[[Handler], Handler]:
        return self.add("DELETE", path, access=access)

    def static(self, prefix: str, directory: Path) -> None:
        """Public static files (Swagger UI assets)."""
        self.statics.append((prefix, directory))


ROUTE_SPECS = web.AppKey("route_specs", dict[AbstractRoute, RouteSpec])
STATIC_ROUTES = web.AppKey("static_routes", set[AbstractRoute])


def install_routes(app: web.Application, tables: list[RouteTable]) -> None:
    specs: dict[AbstractRoute, RouteSpec] = {}
    statics: set[AbstractRoute] = set()
    for table in tables:
        for spec in table.routes:
            route = app.router.add_route(spec.method, spec.path, spec.handler)
            specs[route] = spec
        for prefix, directory in table.statics:
            resource = app.router.add_static(prefix, directory, append_version=False)
            statics.update(resource)
    app[ROUTE_SPECS] = specs
    app[STATIC_ROUTES] = statics


def check_route_policies(app: web.Application) -> None:
    """Fail at start-up if any route was added without an access declaration."""
    statics: set[AbstractRoute] = app[STATIC_ROUTES]
    specs: dict[AbstractRoute, RouteSpec] = app[ROUTE_SPECS]
    declared = set(specs) | statics
    undeclared = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in app.router.routes()
        if route not in declared
    ]
    if undeclared:
        raise RuntimeError(f"routes without an access policy: {', '.join(undeclared)}")


def spec_for(request: web.Request) -> RouteSpec | None:
    return request.app[ROUTE_SPECS].get(request.match_info.route)


def is_static(request: web.Request) -> bool:
    return request.match_info.route in request.app[STATIC_ROUTES]

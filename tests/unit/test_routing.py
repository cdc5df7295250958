"""Access policies are declared for every route, or the app refuses to start."""

from __future__ import annotations

import pytest
from aiohttp import web

from gateway.routing import PUBLIC, RouteTable, any_role, check_route_policies, install_routes


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def test_declared_routes_pass_the_check() -> None:
    table = RouteTable()
    table.get("/a", access=PUBLIC)(_ok)
    table.put("/b", access=any_role("admin"))(_ok)
    app = web.Application()
    install_routes(app, [table])
    check_route_policies(app)


def test_a_route_added_around_the_table_fails_the_check() -> None:
    table = RouteTable()
    table.get("/a", access=PUBLIC)(_ok)
    app = web.Application()
    install_routes(app, [table])
    app.router.add_get("/sneaky", _ok)
    with pytest.raises(RuntimeError, match="/sneaky"):
        check_route_policies(app)


def test_access_is_a_required_argument() -> None:
    table = RouteTable()
    with pytest.raises(TypeError):
        table.get("/a")(_ok)  # type: ignore[call-arg]

"""API documentation: the OpenAPI document, Swagger UI from local assets (no CDN), and the
public JWKS so other services can verify our tokens."""

from __future__ import annotations

from aiohttp import web

from gateway.context import platform
from gateway.responses import json_response
from gateway.routing import PUBLIC, RouteTable
from sharehub.config import REPO_ROOT

routes = RouteTable()
routes.static("/docs/static", REPO_ROOT / "web" / "static")


@routes.get("/api/openapi.yaml", access=PUBLIC)
async def openapi(request: web.Request) -> web.Response:
    path = platform(request).settings.api_dir / "openapi.yaml"
    return web.Response(body=path.read_bytes(), content_type="application/yaml", charset="utf-8")


@routes.get("/docs", access=PUBLIC)
async def swagger_ui(request: web.Request) -> web.Response:
    path = platform(request).settings.web_dir / "templates" / "swagger.html"
    return web.Response(body=path.read_bytes(), content_type="text/html", charset="utf-8")


@routes.get("/.well-known/jwks.json", access=PUBLIC)
async def jwks(request: web.Request) -> web.Response:
    return json_response(platform(request).tokens.keys.jwks(),
                         headers={"Cache-Control": "public, max-age=300"})

"""/api/v1/search and /api/v1/search/suggest: published listings, for anyone.

The gateway only validates the query and relays it to a search replica (search/), which holds
the index; results carry what a result card shows, not the full listing."""

from __future__ import annotations

from aiohttp import web

from gateway.bodies import query_params
from gateway.context import platform
from gateway.responses import json_response
from gateway.routing import PUBLIC, RouteTable
from gateway.search_schemas import SearchQuery, SuggestQuery
from search.client import SearchClient, unavailable
from sharehub.errors import ApiError

routes = RouteTable()


def _client(request: web.Request) -> SearchClient:
    client = platform(request).search
    if client is None:
        raise unavailable()
    return client


@routes.get("/api/v1/search", access=PUBLIC)
async def search(request: web.Request) -> web.Response:
    query = query_params(request, SearchQuery)
    answer = await _client(request).call("search", query.to_request())
    if answer.get("error") == "unknown_category":
        raise ApiError(422, "validation_failed", "Unknown category.",
                       errors=[{"path": "/category", "code": "unknown_category", "message": "No such category"}])
    return json_response(answer)


@routes.get("/api/v1/search/suggest", access=PUBLIC)
async def suggest(request: web.Request) -> web.Response:
    query = query_params(request, SuggestQuery)
    return json_response(await _client(request).call("suggest", query.q, query.limit))

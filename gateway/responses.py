"""Response helpers: orjson bodies and RFC 9457 problem documents."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.context import REQUEST_ID
from sharehub.errors import ApiError

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def problem_response(error: ApiError, request: web.Request) -> web.Response:
    body = error.problem(instance=request.path)
    request_id = request.get(REQUEST_ID)
    if request_id:
        body["request_id"] = request_id
    return web.Response(
        body=orjson.dumps(body), status=error.status, content_type=PROBLEM_JSON, headers=error.headers
    )


def no_content() -> web.Response:
    return web.Response(status=204)

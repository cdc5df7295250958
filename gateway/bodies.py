"""Request bodies and query parameters: JSON only, size-limited, unknown fields refused, every
problem reported with its JSON-pointer path in one 422."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from sharehub.errors import ApiError

ModelT = TypeVar("ModelT", bound=BaseModel)


class Body(BaseModel):
    """Base for request bodies: unknown fields are errors, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _pointer(loc: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in loc) if loc else ""


def validation_error(exc: ValidationError, *, location: str = "body") -> ApiError:
    errors = []
    for item in exc.errors(include_url=False):
        if item["type"] == "json_invalid":
            return ApiError(400, "malformed_json", "The request body is not valid JSON.")
        errors.append({"path": _pointer(tuple(item["loc"])), "code": item["type"], "message": item["msg"]})
    return ApiError(422, "validation_failed", f"The request {location} is not valid.", errors=errors)


async def read_body(request: web.Request, model: type[ModelT]) -> ModelT:
    if not request.body_exists:
        raise ApiError(422, "validation_failed", "A JSON body is required.",
                       errors=[{"path": "", "code": "missing", "message": "Body required"}])
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.read()  # aiohttp enforces client_max_size -> 413
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    raw = request.match_info[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(
            422, "validation_failed", f"`{name}` must be a UUID.",
            errors=[{"path": f"/{name}", "code": "uuid_parsing", "message": "Not a UUID"}],
        ) from None


def query_params(request: web.Request, model: type[ModelT]) -> ModelT:
    data: dict[str, Any] = dict(request.query)
    try:
        return model.model_validate(data, strict=False)
    except ValidationError as exc:
        raise validation_error(exc, location="query") from None

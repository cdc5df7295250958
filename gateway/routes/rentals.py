"""/api/v1/rentals: booking requests and every later step of a rental.

A booking request and each transition are commands to the *listing's* entity, which owns the
calendar and the open rentals (actors/listing_rentals.py). Reads come from Postgres. A rental
exists only for its renter, its owner and moderators; everyone else gets 404."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from actors.listing import KIND as LISTING
from actors.periods import now_utc
from gateway import rental_actions
from gateway.bodies import path_uuid, query_params, read_body
from gateway.context import platform, principal
from gateway.entities import execute
from gateway.rental_schemas import ExtensionBody, HandoverConfirmation, ReasonBody, RentalRequest, RentalsQuery
from gateway.rental_views import rental_view, viewer_role
from gateway.responses import json_response
from gateway.routing import AUTHENTICATED, RouteTable
from sharehub.errors import ApiError, forbidden, not_found
from storage import rentals as store

routes = RouteTable()


async def _rental_for(request: web.Request, rental_id: uuid.UUID) -> tuple[dict[str, Any], str]:
    rental = await store.get_rental(platform(request).db, rental_id)
    role = viewer_role(rental, principal(request)) if rental else None
    if rental is None or role is None:
        raise not_found("rental")
    return rental, role


async def _respond(request: web.Request, rental_id: uuid.UUID, *, status: int = 200,
                   reply: dict[str, Any] | None = None) -> web.Response:
    found = await store.get_rental_with_history(platform(request).db, rental_id)
    role = viewer_role(found[0], principal(request)) if found else None
    if found is None or role is None:
        raise not_found("rental")
    rental, history = found
    view = rental_view(rental, role, now=now_utc(), history=history)
    if reply and "handover_code" in reply and role == "owner":
        view["handover_code"] = reply["handover_code"]
    headers = {"Location": f"/api/v1/rentals/{rental_id}"} if status == 201 else None
    return json_response(view, status=status, headers=headers)


@routes.post("/api/v1/rentals", access=AUTHENTICATED, idempotent=True)
async def request_rental(request: web.Request) -> web.Response:
    body = await read_body(request, RentalRequest)
    rental_id = await rental_actions.request_rental(request, body)
    return await _respond(request, rental_id, status=201)


@routes.get("/api/v1/rentals", access=AUTHENTICATED)
async def list_rentals(request: web.Request) -> web.Response:
    query = query_params(request, RentalsQuery)
    rows = await store.list_rentals(platform(request).db, principal(request).user_id, role=query.role,
                                    status=query.status, limit=query.limit, offset=query.offset)
    now = now_utc()
    return json_response({"items": [rental_view(r, query.role, now=now) for r in rows],
                          "limit": query.limit, "offset": query.offset})


@routes.get("/api/v1/rentals/{rental_id}", access=AUTHENTICATED)
async def get_rental(request: web.Request) -> web.Response:
    return await _respond(request, path_uuid(request, "rental_id"))


async def _transition(request: web.Request, command: str, payload: dict[str, Any] | None = None) -> web.Response:
    rental_id = path_uuid(request, "rental_id")
    rental, _ = await _rental_for(request, rental_id)
    result = await execute(request, LISTING, rental["listing_id"], f"rental.{command}",
                           {**(payload or {}), "rental_id": str(rental_id)})
    return await _respond(request, rental_id, reply=result.reply)


async def _optional_body(request: web.Request, model: type[ReasonBody]) -> ReasonBody:
    if not request.body_exists:
        return model()
    return await read_body(request, model)


def _simple(command: str, path: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return await _transition(request, command)

    handler.__name__ = f"{command}_rental"
    routes.post(f"/api/v1/rentals/{{rental_id}}/{path}", access=AUTHENTICATED, idempotent=True)(handler)


for _command, _path in (("accept", "accept"), ("handover", "handover"), ("return", "return"),
                        ("complete", "complete")):
    _simple(_command, _path)


@routes.post("/api/v1/rentals/{rental_id}/decline", access=AUTHENTICATED, idempotent=True)
async def decline_rental(request: web.Request) -> web.Response:
    body = await _optional_body(request, ReasonBody)
    return await _transition(request, "decline", {"reason": body.reason} if body.reason else None)


@routes.post("/api/v1/rentals/{rental_id}/cancel", access=AUTHENTICATED, idempotent=True)
async def cancel_rental(request: web.Request) -> web.Response:
    body = await _optional_body(request, ReasonBody)
    return await _transition(request, "cancel", {"reason": body.reason} if body.reason else None)


@routes.post("/api/v1/rentals/{rental_id}/confirm-handover", access=AUTHENTICATED, idempotent=True)
async def confirm_handover(request: web.Request) -> web.Response:
    body = await read_body(request, HandoverConfirmation)
    return await _transition(request, "confirm_handover", {"code": body.code})


@routes.post("/api/v1/rentals/{rental_id}/extend", access=AUTHENTICATED, idempotent=True)
async def extend_rental(request: web.Request) -> web.Response:
    """The renter asks for a later `end`; the owner answers with `decision`."""
    body = await read_body(request, ExtensionBody)
    _, role = await _rental_for(request, path_uuid(request, "rental_id"))
    if role == "renter":
        if body.end is None or body.decision is not None:
            raise _extension_body_error("/end", "The renter sends the new `end` (and nothing else).")
        return await _transition(request, "request_extension", {"end": body.end})
    if role == "owner":
        if body.decision is None or body.end is not None:
            raise _extension_body_error("/decision", "The owner sends a `decision`: accept or decline.")
        return await _transition(request, f"{body.decision}_extension")
    raise forbidden("Only the renter and the owner take part in an extension.")


def _extension_body_error(path: str, detail: str) -> ApiError:
    return ApiError(422, "validation_failed", detail,
                    errors=[{"path": path, "code": "missing", "message": detail}])

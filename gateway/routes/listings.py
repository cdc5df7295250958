"""/api/v1/listings, /api/v1/categories and the moderation queue.

Writes are commands to the listing's entity actor (which decides and commits); reads come
straight from Postgres, which holds every acknowledged change."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from actors.listing import KIND
from gateway.bodies import path_uuid, query_params, read_body
from gateway.context import PRINCIPAL, platform, principal
from gateway.entities import execute, new_entity_id
from gateway.listing_schemas import BlockedPeriodsBody, ListingCreate, ListingPatch, RejectBody
from gateway.listing_views import PUBLIC_STATUSES, availability, availability_slots, can_see_everything, listing_view
from gateway.responses import json_response, no_content
from gateway.routing import AUTHENTICATED, PUBLIC, PUBLIC_IDENTIFIED, RouteTable, any_role
from sharehub.errors import ApiError, not_found
from storage import listings as store
from storage import rentals as rental_store

routes = RouteTable()
MODERATORS = any_role("moderator", "admin")
_MAX_AVAILABILITY_DAYS = {"day": 366, "hour": 31}


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


class OwnListingsQuery(Page):
    status: Literal["draft", "pending_review", "rejected", "published", "paused", "archived"] | None = None


class ReviewQueueQuery(Page):
    status: Literal["pending_review", "rejected"] = "pending_review"


class AvailabilityQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: date = Field(alias="from")
    to: date


async def category_exists(request: web.Request, category_id: str) -> None:
    if not await platform(request).db.fetchval("SELECT 1 FROM categories WHERE id = $1", category_id):
        raise ApiError(422, "validation_failed", "Unknown category.",
                       errors=[{"path": "/category_id", "code": "unknown_category", "message": "No such category"}])


async def visible_listing(request: web.Request, listing_id: uuid.UUID) -> tuple[dict[str, Any], bool]:
    listing = await store.get_listing(platform(request).db, listing_id)
    if listing is None:
        raise not_found("listing")
    full = can_see_everything(listing, request.get(PRINCIPAL))
    if not full and listing["status"] not in PUBLIC_STATUSES:
        raise not_found("listing")
    return listing, full


async def _respond_with_listing(request: web.Request, listing_id: uuid.UUID, status: int = 200) -> web.Response:
    listing = await store.get_listing(platform(request).db, listing_id)
    assert listing is not None  # the command that just succeeded committed it
    headers = {"Location": f"/api/v1/listings/{listing_id}"} if status == 201 else None
    return json_response(listing_view(listing, full=True), status=status, headers=headers)


@routes.get("/api/v1/categories", access=PUBLIC)
async def list_categories(request: web.Request) -> web.Response:
    rows = await store.categories(platform(request).db)
    children: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        children.setdefault(row["parent_id"], []).append(row)

    def node(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "name": {"ru": row["name_ru"], "en": row["name_en"]},
                "children": [node(child) for child in children.get(row["id"], [])]}

    policies = await store.cancellation_policies(platform(request).db)
    return json_response(
        {
            "items": [node(root) for root in children.get(None, [])],
            "cancellation_policies": [
                {"code": p["code"], "name": {"ru": p["name_ru"], "en": p["name_en"]}, "tiers": p["tiers"]}
                for p in policies
            ],
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


@routes.post("/api/v1/listings", access=AUTHENTICATED, idempotent=True)
async def create_listing(request: web.Request) -> web.Response:
    body = await read_body(request, ListingCreate)
    nulls = body.nulls_not_allowed()
    if nulls:
        raise _nulls(nulls)
    await category_exists(request, body.category_id)
    listing_id = new_entity_id(request, KIND)
    await execute(request, KIND, listing_id, "create", body.as_payload())
    return await _respond_with_listing(request, listing_id, status=201)


def _nulls(names: list[str]) -> ApiError:
    return ApiError(422, "validation_failed", "These fields cannot be null.", errors=[
        {"path": f"/{name}", "code": "not_nullable", "message": "Cannot be null"} for name in sorted(names)
    ])


@routes.get("/api/v1/listings/{listing_id}", access=PUBLIC_IDENTIFIED)
async def get_listing(request: web.Request) -> web.Response:
    listing, full = await visible_listing(request, path_uuid(request, "listing_id"))
    return json_response(listing_view(listing, full=full))


@routes.patch("/api/v1/listings/{listing_id}", access=AUTHENTICATED)
async def patch_listing(request: web.Request) -> web.Response:
    listing_id = path_uuid(request, "listing_id")
    body = await read_body(request, ListingPatch)
    nulls = body.nulls_not_allowed()
    if nulls:
        raise _nulls(nulls)
    if body.category_id is not None:
        await category_exists(request, body.category_id)
    await execute(request, KIND, listing_id, "update", body.as_payload())
    return await _respond_with_listing(request, listing_id)


@routes.delete("/api/v1/listings/{listing_id}", access=AUTHENTICATED)
async def delete_listing(request: web.Request) -> web.Response:
    await execute(request, KIND, path_uuid(request, "listing_id"), "archive")
    return no_content()


def _lifecycle(command: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        listing_id = path_uuid(request, "listing_id")
        await execute(request, KIND, listing_id, command)
        return await _respond_with_listing(request, listing_id)

    handler.__name__ = f"{command}_listing"
    return handler


for _command in ("submit", "pause", "resume", "archive"):
    routes.post(f"/api/v1/listings/{{listing_id}}/{_command}", access=AUTHENTICATED,
                idempotent=True)(_lifecycle(_command))


@routes.put("/api/v1/listings/{listing_id}/blocked-periods", access=AUTHENTICATED)
async def set_blocked_periods(request: web.Request) -> web.Response:
    listing_id = path_uuid(request, "listing_id")
    body = await read_body(request, BlockedPeriodsBody)
    payload = body.model_dump(mode="json")
    await execute(request, KIND, listing_id, "set_blocked_periods", payload)
    return await _respond_with_listing(request, listing_id)


@routes.get("/api/v1/listings/{listing_id}/availability", access=PUBLIC_IDENTIFIED)
async def get_availability(request: web.Request) -> web.Response:
    listing, _ = await visible_listing(request, path_uuid(request, "listing_id"))
    query = query_params(request, AvailabilityQuery)
    days = (query.to - query.from_).days + 1
    limit = _MAX_AVAILABILITY_DAYS[listing["rental_unit"]]
    if days < 1 or days > limit:
        raise ApiError(422, "validation_failed", f"`from`..`to` must span 1 to {limit} days.",
                       errors=[{"path": "/to", "code": "range_invalid", "message": "Invalid range"}])
    slots = availability_slots(listing, query.from_, query.to)
    busy = await rental_store.busy_units(platform(request).db, listing["id"], slots)
    return json_response(availability(listing, slots, busy))


@routes.get("/api/v1/users/me/listings", access=AUTHENTICATED)
async def my_listings(request: web.Request) -> web.Response:
    query = query_params(request, OwnListingsQuery)
    rows = await store.list_owner_listings(platform(request).db, principal(request).user_id,
                                           status=query.status, limit=query.limit, offset=query.offset)
    return json_response({"items": [listing_view(r, full=True) for r in rows],
                          "limit": query.limit, "offset": query.offset})


@routes.get("/api/v1/moderation/listings", access=MODERATORS)
async def review_queue(request: web.Request) -> web.Response:
    query = query_params(request, ReviewQueueQuery)
    rows = await store.review_queue(platform(request).db, status=query.status, limit=query.limit,
                                    offset=query.offset)
    return json_response({"items": [listing_view(r, full=True) for r in rows],
                          "limit": query.limit, "offset": query.offset})


@routes.post("/api/v1/moderation/listings/{listing_id}/approve", access=MODERATORS, idempotent=True)
async def approve_listing(request: web.Request) -> web.Response:
    listing_id = path_uuid(request, "listing_id")
    await execute(request, KIND, listing_id, "approve")
    return await _respond_with_listing(request, listing_id)


@routes.post("/api/v1/moderation/listings/{listing_id}/reject", access=MODERATORS, idempotent=True)
async def reject_listing(request: web.Request) -> web.Response:
    listing_id = path_uuid(request, "listing_id")
    body = await read_body(request, RejectBody)
    await execute(request, KIND, listing_id, "reject", {"reason": body.reason})
    return await _respond_with_listing(request, listing_id)

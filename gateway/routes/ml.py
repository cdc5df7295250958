"""ml-core through the gateway: price suggestions for a listing (its owner asks) or a draft, and
similar listings (anyone who can see the listing). The answers come from the Ray Serve `ml`
application (ml/serving.py) through deployment handles, within a deadline (ml/client.py)."""

from __future__ import annotations

import statistics
import uuid
from datetime import timedelta
from typing import Any

from aiohttp import web

from actors.periods import local_day
from gateway.bodies import path_uuid, query_params, read_body
from gateway.context import platform, principal
from gateway.listing_views import listing_view
from gateway.ml_schemas import (
    DraftPricingBody,
    PriceSuggestionQuery,
    SimilarQuery,
    cache_key,
    price_question,
    rental_period,
    suggestion_view,
)
from gateway.responses import json_response
from gateway.routes.listings import category_exists, visible_listing
from gateway.routing import AUTHENTICATED, PUBLIC_IDENTIFIED, RouteTable
from ml.client import MLClient, ml_unavailable
from sharehub.errors import ApiError
from storage import listings as store

routes = RouteTable()
# A draft's price centres on its text-nearest listings when there are at least this many.
TEXT_COMPARABLES, MIN_TEXT_COMPARABLES = 8, 3
MAX_CANDIDATES = 200


def _client(request: web.Request) -> MLClient:
    client = platform(request).ml
    if client is None:
        raise ml_unavailable()
    return client


def _listing_facts(listing: dict[str, Any]) -> dict[str, Any]:
    return {"category_id": listing["category_id"], "city": listing["city"], "rental_unit": listing["rental_unit"],
            "price_per_unit": listing["price_per_unit"], "deposit": listing["deposit"],
            "photos": len(listing["photos"]), "instant_book": listing["instant_book"],
            "quantity": listing["quantity"]}


def _listing_content(listing: dict[str, Any]) -> dict[str, Any]:
    """The fields of ml.similar.ListingContent (the Recommender knows each category's parent)."""
    return {"id": str(listing["id"]), "title": listing["title"], "description": listing["description"],
            "category_id": listing["category_id"], "parent_category_id": None,
            "price_per_unit": listing["price_per_unit"], "lat": listing["lat"], "lon": listing["lon"],
            "rental_unit": listing["rental_unit"]}


async def _suggest(request: web.Request, question: dict[str, Any]) -> dict[str, Any]:
    answer = await _client(request).call("Pricing", "suggest", question, cache_key=cache_key(question))
    if "error" in answer:  # the replica refused the question: ours to have caught, so say so plainly
        raise ApiError(422, "validation_failed", "The question cannot be priced.", errors=[
            {"path": "", "code": str(answer["error"]), "message": str(answer.get("detail", ""))}])
    return answer


@routes.get("/api/v1/listings/{listing_id}/price-suggestion", access=AUTHENTICATED)
async def listing_price_suggestion(request: web.Request) -> web.Response:
    listing, _ = await visible_listing(request, path_uuid(request, "listing_id"))
    caller = principal(request)
    if caller.user_id != listing["owner_id"] and "admin" not in caller.roles:
        raise ApiError(403, "not_listing_owner", "Only the listing's owner is advised on its price.")
    query = query_params(request, PriceSuggestionQuery)
    period = rental_period(listing["rental_unit"], query.from_, query.to)
    answer = await _suggest(request, price_question(_listing_facts(listing), period, has_price=True))
    return json_response({"listing_id": str(listing["id"]), **suggestion_view(answer, period, listing["rental_unit"])})


@routes.post("/api/v1/pricing/suggest", access=AUTHENTICATED)
async def draft_price_suggestion(request: web.Request) -> web.Response:
    body = await read_body(request, DraftPricingBody)
    await category_exists(request, body.category_id)
    period = rental_period(body.rental_unit, body.start, body.end)
    nearest = await _draft_comparables(request, body)
    facts = {"category_id": body.category_id, "city": body.city, "rental_unit": body.rental_unit,
             # Without the owner's own idea of a price there is nothing to compare with: the
             # model prices around the comparables and the answer has no `current`.
             "price_per_unit": body.price_per_unit or 0, "deposit": body.deposit, "photos": body.photos,
             "instant_book": body.instant_book, "quantity": body.quantity}
    question = price_question(facts, period, has_price=body.price_per_unit is not None)
    if len(nearest) >= MIN_TEXT_COMPARABLES:
        # What the draft is, by its title, says more about its price than its category does.
        question["centre"] = statistics.median(item["price_per_unit"] for item in nearest)
    answer = await _suggest(request, question)
    return json_response({**suggestion_view(answer, period, body.rental_unit), "similar_listings": nearest})


async def _draft_comparables(request: web.Request, body: DraftPricingBody) -> list[dict[str, Any]]:
    """The published listings nearest to the draft by its title (and its attributes' values);
    none when the recommender cannot say - the price is then centred on the category median."""
    text = " ".join([body.title, *(str(value) for value in body.attributes.values())])
    try:
        answer = await _client(request).call("Recommender", "comparables",
                                             (text, body.category_id, body.rental_unit, TEXT_COMPARABLES),
                                             cache_key=f"{text}|{body.category_id}|{body.rental_unit}")
    except ApiError:
        return []
    items: list[dict[str, Any]] = answer.get("items", [])
    return items


@routes.get("/api/v1/listings/{listing_id}/similar", access=PUBLIC_IDENTIFIED)
async def similar_listings(request: web.Request) -> web.Response:
    listing, _ = await visible_listing(request, path_uuid(request, "listing_id"))
    query = query_params(request, SimilarQuery)
    days = query.free_days()
    listing_id = str(listing["id"])
    # With dates, more neighbours are asked for than shown: the booked-out ones are dropped.
    wanted = query.limit if days is None else min(MAX_CANDIDATES, query.limit * 4)
    # The content goes along: a listing the catalogue has not caught up with is scored from it.
    answer = await _client(request).call("Recommender", "similar", (listing_id, wanted, _listing_content(listing)),
                                         cache_key=f"{listing_id}|{wanted}")
    if "error" in answer:  # the Recommender refused our own query: nothing the caller can mend
        raise ml_unavailable()
    scores = {uuid.UUID(item["id"]): item["score"] for item in answer["items"]}
    db = platform(request).db
    rows = await store.published_by_ids(db, list(scores))
    if days is not None:
        free = await store.free_between(db, [row["id"] for row in rows], days.start, days.end,
                                        first_day=local_day(days.start),
                                        last_day=local_day(days.end) - timedelta(days=1))
        rows = [row for row in rows if row["id"] in free]
    return json_response({
        "items": [{**listing_view(row, full=False), "similarity": scores[row["id"]]} for row in rows[:query.limit]],
        "model_version": answer["model_version"],
        "stale": bool(answer.get("stale", False)),
    })

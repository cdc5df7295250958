"""Asking to rent: the renter's caps on held dates, then the listing's decision.

Until payments make a booking cost money, holding dates is free, so a renter may hold only
`max_open_rentals_per_renter` rentals that have not started (requested or accepted: instant book
starts accepted), and `max_open_rentals_per_listing` of them on one listing. Counted in Postgres
(what is committed) plus, in Redis, this renter's booking requests in flight on every gateway -
each request counts itself there first, so of two parallel requests the later one sees the
earlier: a burst cannot slip past the cap the way a read-then-write check would let it."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from actors.listing import KIND as LISTING
from gateway.context import platform, principal
from gateway.entities import execute, new_entity_id
from gateway.rental_schemas import RentalRequest
from sharehub.errors import ApiError
from sharehub.platform import Platform
from storage import rentals as store

log = logging.getLogger(__name__)

# A gateway that dies mid-request leaves its count behind; the key outlives no request by long.
_IN_FLIGHT_TTL_SECS = 60


@contextlib.asynccontextmanager
async def _in_flight(plat: Platform, renter_id: uuid.UUID) -> AsyncIterator[int]:
    """Count this booking request as in flight for the renter; yields how many are (itself included)."""
    key = f"rentals:in-flight:{renter_id}"
    async with plat.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, _IN_FLIGHT_TTL_SECS)
        count, _ = await pipe.execute()
    try:
        yield int(count)
    finally:
        try:
            await plat.redis.decr(key)
        except Exception as exc:  # Redis went away meanwhile: the count lapses with its key
            log.warning("could not release a booking slot: %s", type(exc).__name__)


def _cap_error(code: str, detail: str) -> ApiError:
    return ApiError(429, code, detail)


async def request_rental(request: web.Request, body: RentalRequest) -> uuid.UUID:
    """Book (instant) or ask to book; returns the rental's id once the listing has committed it."""
    plat, renter = platform(request), principal(request)
    settings = plat.settings
    rental_id = new_entity_id(request, "rental")
    async with _in_flight(plat, renter.user_id) as in_flight:
        total, here = await store.unstarted_rentals(plat.db, renter.user_id, body.listing_id, excluding=rental_id)
        # `in_flight` includes this request: committed ones plus the ones racing it, plus itself.
        if total + in_flight > settings.max_open_rentals_per_renter:
            raise _cap_error("too_many_open_rentals",
                             f"You already hold {settings.max_open_rentals_per_renter} rentals that have not "
                             "started; cancel one or wait until one starts.")
        if here + in_flight > settings.max_open_rentals_per_listing:
            raise _cap_error("too_many_open_rentals_on_listing",
                             f"You already hold {settings.max_open_rentals_per_listing} rentals of this listing "
                             "that have not started.")
        payload = {"rental_id": str(rental_id), "start": body.start, "end": body.end, "quantity": body.quantity}
        await execute(request, LISTING, body.listing_id, "request_booking", payload)
    return rental_id

"""Calendars cannot be held for free: a renter holds a bounded number of rentals that have not
started - requested or accepted (instant book starts accepted) - in all and per listing; the caps
hold under a parallel burst, free up when a rental ends, and never refuse a retry of a booking
that already got through."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from actors.periods import local_day, now_utc
from sharehub.platform import Platform
from tests.helpers import LoggedIn, gateway_with, published_listing, register_and_login

Client = TestClient[Any, Any]
PER_RENTER, PER_LISTING = 4, 2


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


def capped_gateway(platform: Platform) -> contextlib.AbstractAsyncContextManager[Client]:
    return gateway_with(platform, max_open_rentals_per_renter=PER_RENTER, max_open_rentals_per_listing=PER_LISTING)


async def _book(gateway: Client, renter: LoggedIn, listing_id: str, day: int,
                key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {**renter.auth, **({"Idempotency-Key": key} if key else {})}
    resp = await gateway.post("/api/v1/rentals", headers=headers,
                              json={"listing_id": listing_id, "start": _day(day), "end": _day(day)})
    return resp.status, await resp.json()


async def test_instant_bookings_count_against_the_per_listing_cap(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform, instant_book=True, quantity=5)
    renter, other = await register_and_login(client), await register_and_login(client)
    async with capped_gateway(platform) as gateway:
        for day in (20, 21):
            status, rental = await _book(gateway, renter, listing["id"], day)
            assert (status, rental["status"]) == (201, "accepted"), rental
        status, problem = await _book(gateway, renter, listing["id"], 22)
        assert (status, problem["code"]) == (429, "too_many_open_rentals_on_listing"), problem
        # Someone else still books it: the cap is the renter's, not the listing's.
        assert (await _book(gateway, other, listing["id"], 22))[0] == 201


async def test_the_renter_cap_counts_every_listing_and_frees_up_on_cancel(client: Client, platform: Platform) -> None:
    listings = [(await published_listing(client, platform, instant_book=i % 2 == 0))[1]["id"]
                for i in range(PER_RENTER + 1)]
    renter = await register_and_login(client)
    async with capped_gateway(platform) as gateway:
        booked = []
        for listing_id in listings[:PER_RENTER]:
            status, rental = await _book(gateway, renter, listing_id, 30)
            assert status == 201, rental
            booked.append(rental["id"])
        status, problem = await _book(gateway, renter, listings[-1], 30)
        assert (status, problem["code"]) == (429, "too_many_open_rentals"), problem
        assert problem["status"] == 429 and problem["detail"]
        resp = await gateway.post(f"/api/v1/rentals/{booked[0]}/cancel", headers=renter.auth)
        assert resp.status == 200, await resp.text()
        assert (await _book(gateway, renter, listings[-1], 30))[0] == 201


async def test_a_parallel_burst_cannot_pass_the_cap(client: Client, platform: Platform) -> None:
    listings = [(await published_listing(client, platform, instant_book=True))[1]["id"] for _ in range(10)]
    renter = await register_and_login(client)
    async with capped_gateway(platform) as gateway:
        outcomes = await asyncio.gather(*(_book(gateway, renter, listing_id, 40) for listing_id in listings))
    statuses = sorted(status for status, _ in outcomes)
    assert statuses.count(201) <= PER_RENTER and set(statuses) <= {201, 429}, outcomes
    held = await platform.db.fetchval(
        "SELECT count(*) FROM rentals WHERE renter_id = $1 AND status IN ('requested', 'accepted')",
        uuid.UUID(renter.user_id))
    assert held == statuses.count(201) <= PER_RENTER


async def test_a_retry_of_a_booking_that_reached_the_cap_is_not_refused(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform, instant_book=True, quantity=3)
    renter = await register_and_login(client)
    async with capped_gateway(platform) as gateway:
        assert (await _book(gateway, renter, listing["id"], 50))[0] == 201
        key = f"book-{uuid.uuid4()}"
        status, rental = await _book(gateway, renter, listing["id"], 51, key)
        assert status == 201
        # The stored answer is gone (as after 24 h, or a lost answer): the rerun must find the
        # same rental, not count it against its own cap.
        await platform.db.execute("DELETE FROM idempotency_keys WHERE key = $1", key)
        status, again = await _book(gateway, renter, listing["id"], 51, key)
        assert (status, again["id"]) == (201, rental["id"]), again

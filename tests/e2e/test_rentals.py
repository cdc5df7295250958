"""Rentals through the HTTP API and the listing entity actors: quotes, every step of the
lifecycle, who may fire what, the calendar, extensions, timers, and no double booking."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from actors.periods import local_day, now_utc
from sharehub.platform import Platform
from storage import rentals as rental_store
from tests.helpers import DRILL, LoggedIn, gateway_with, make_user_with_roles, published_listing, register_and_login

Client = TestClient[Any, Any]


def _day(offset: int) -> str:
    """A date `offset` days after today (Moscow), so the tests never age."""
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


async def _request(client: Client, renter: LoggedIn, listing_id: str, start: str, end: str,
                   **extra: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/v1/rentals", headers=renter.auth,
                             json={"listing_id": listing_id, "start": start, "end": end, **extra})
    return resp.status, await resp.json()


async def _step(client: Client, who: LoggedIn, rental_id: str, action: str, body: Any = None, *,
                expect: int = 200) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/rentals/{rental_id}/{action}", headers=who.auth, json=body)
    payload: dict[str, Any] = await resp.json()
    assert resp.status == expect, (action, payload)
    return payload


async def _wait_for_status(client: Client, who: LoggedIn, rental_id: str, status: str) -> dict[str, Any]:
    for _ in range(100):
        rental: dict[str, Any] = await (await client.get(f"/api/v1/rentals/{rental_id}", headers=who.auth)).json()
        if rental["status"] == status:
            return rental
        await asyncio.sleep(0.1)
    raise AssertionError(f"rental {rental_id} stayed {rental['status']}, expected {status}")


async def test_a_rental_walks_from_request_to_completion(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    status, rental = await _request(client, renter, listing["id"], _day(10), _day(12))
    assert status == 201, rental
    assert rental["status"] == "requested" and rental["units"] == 3
    assert (rental["start"], rental["end"]) == (_day(10), _day(12))
    quote = rental["quote"]
    # 3 days x 700 RUB, 10 % off from 3 days, 10 % platform fee on the rest, deposit apart.
    assert quote["rent"] == 210_000 and quote["discount"] == {"percent": 10, "amount": 21_000}
    assert quote["platform_fee"] == 18_900 and quote["total"] == 207_900 and quote["deposit"] == 500_000
    assert rental["expires_at"] is not None

    rental_id = rental["id"]
    accepted = await _step(client, owner, rental_id, "accept")
    assert accepted["status"] == "accepted" and accepted["expires_at"] is None
    issued = await _step(client, owner, rental_id, "handover")
    code = issued["handover_code"]
    assert len(code) == 6 and issued["status"] == "accepted"
    renter_view = await (await client.get(f"/api/v1/rentals/{rental_id}", headers=renter.auth)).json()
    assert renter_view["handover_code"] is None  # only the owner sees it
    wrong = "000000" if code != "000000" else "111111"
    refused = await _step(client, renter, rental_id, "confirm-handover", {"code": wrong}, expect=422)
    assert refused["code"] == "wrong_handover_code"
    assert (await _step(client, renter, rental_id, "confirm-handover", {"code": code}))["status"] == "active"
    returned = await _step(client, owner, rental_id, "return")
    assert returned["status"] == "returned" and returned["late_fee"] == 0
    done = await _step(client, owner, rental_id, "complete")
    assert done["status"] == "completed"
    assert [(h["command"], h["to"], h["by"]) for h in done["history"]] == [
        ("request", "requested", "renter"), ("accept", "accepted", "owner"), ("handover", "accepted", "owner"),
        ("confirm_handover", "active", "renter"), ("return", "returned", "owner"), ("complete", "completed", "owner"),
    ]
    events = await platform.db.fetch(
        "SELECT subject FROM outbox WHERE entity_kind = 'rental' AND entity_id = $1 ORDER BY created_at", rental_id)
    assert f"rental.{rental_id}.state_changed" in {e["subject"] for e in events}
    # Both parties list it; a stranger cannot even see it.
    mine = await (await client.get("/api/v1/rentals", params={"role": "renter"}, headers=renter.auth)).json()
    assert [r["id"] for r in mine["items"]] == [rental_id]
    theirs = await (await client.get("/api/v1/rentals", params={"role": "owner", "status": "completed"},
                                     headers=owner.auth)).json()
    assert [r["id"] for r in theirs["items"]] == [rental_id]
    stranger = await register_and_login(client)
    assert (await client.get(f"/api/v1/rentals/{rental_id}", headers=stranger.auth)).status == 404
    assert (await client.post(f"/api/v1/rentals/{rental_id}/cancel", headers=stranger.auth)).status == 404


async def test_held_dates_are_refused_and_freed_by_a_decline(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    first, second = await register_and_login(client), await register_and_login(client)
    status, held = await _request(client, first, listing["id"], _day(20), _day(22))
    assert status == 201
    status, problem = await _request(client, second, listing["id"], _day(22), _day(23))
    assert (status, problem["code"]) == (409, "dates_unavailable")
    days = await (await client.get(f"/api/v1/listings/{listing['id']}/availability",
                                   params={"from": _day(19), "to": _day(23)})).json()
    assert [d["free"] for d in days["items"]] == [1, 0, 0, 0, 1]
    await _step(client, owner, held["id"], "decline", {"reason": "Уезжаю в командировку"})
    status, booked = await _request(client, second, listing["id"], _day(22), _day(23))
    assert status == 201, booked


async def test_who_may_fire_what(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    _, rental = await _request(client, renter, listing["id"], _day(30), _day(31))
    assert (await _step(client, renter, rental["id"], "accept", expect=403))["code"] == "forbidden"
    await _step(client, owner, rental["id"], "accept")
    assert (await _step(client, owner, rental["id"], "accept", expect=409))["code"] == "invalid_transition"
    assert (await _step(client, owner, rental["id"], "return", expect=409))["code"] == "invalid_transition"
    status, own = await _request(client, owner, listing["id"], _day(40), _day(41))
    assert (status, own["code"]) == (409, "own_listing")
    status, past = await _request(client, renter, listing["id"], _day(-2), _day(-1))
    assert (status, past["code"]) == (422, "start_in_past")
    status, hourly = await _request(client, renter, listing["id"], f"{_day(40)}T10:00:00+03:00",
                                    f"{_day(40)}T12:00:00+03:00")
    assert (status, hourly["code"]) == (422, "invalid_period")
    status, _ = await _request(client, renter, str(uuid.uuid4()), _day(40), _day(41))
    assert status == 404
    for start, end in [(_day(40), "9999-12-31"), (_day(40), _day(400)), (_day(370), _day(371))]:
        status, far = await _request(client, renter, listing["id"], start, end)
        assert status == 422 and far["code"] in ("too_far_ahead", "invalid_period"), far
    draft = await client.post("/api/v1/listings", json={**DRILL, "title": "Черновик"}, headers=owner.auth)
    status, hidden = await _request(client, renter, (await draft.json())["id"], _day(40), _day(41))
    assert (status, hidden["code"]) == (404, "not_found")  # someone else's draft does not exist


async def test_cancellations_follow_the_policy(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform, cancellation_policy="strict")
    renter = await register_and_login(client)
    _, rental = await _request(client, renter, listing["id"], _day(3), _day(4))
    await _step(client, owner, rental["id"], "accept")
    cancelled = await _step(client, renter, rental["id"], "cancel", {"reason": "Планы изменились"})
    assert cancelled["cancellation"]["reason"] == "Планы изменились"
    # Strict: 50 % back with a week's notice, nothing later; three days ahead gives nothing back.
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancellation"]["refund_percent"] == 0 and not cancelled["cancellation"]["owner_penalty"]
    _, again = await _request(client, renter, listing["id"], _day(3), _day(4))
    await _step(client, owner, again["id"], "accept")
    by_owner = await _step(client, owner, again["id"], "cancel")
    assert by_owner["cancellation"]["refund_percent"] == 100 and by_owner["cancellation"]["owner_penalty"]


async def test_an_extension_is_checked_against_the_calendar(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    renter, other = await register_and_login(client), await register_and_login(client)
    _, rental = await _request(client, renter, listing["id"], _day(50), _day(51))
    await _step(client, owner, rental["id"], "accept")
    _, blocker = await _request(client, other, listing["id"], _day(54), _day(55))
    asked = await _step(client, renter, rental["id"], "extend", {"end": _day(53)})
    assert asked["extension"]["end"]
    extended = await _step(client, owner, rental["id"], "extend", {"decision": "accept"})
    assert extended["end"] == _day(53) and extended["units"] == 4
    assert extended["total"] > rental["total"] and extended["quote"]["discount"]["percent"] == 10
    await _step(client, renter, rental["id"], "extend", {"end": _day(54)})
    clash = await _step(client, owner, rental["id"], "extend", {"decision": "accept"}, expect=409)
    assert clash["code"] == "dates_unavailable"
    await _step(client, owner, rental["id"], "extend", {"decision": "decline"})
    assert (await _step(client, owner, rental["id"], "extend", {"end": _day(60)}, expect=422))["errors"]
    assert blocker["status"] == "requested"


async def test_instant_book_accepts_at_once(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform, instant_book=True)
    renter = await register_and_login(client)
    status, rental = await _request(client, renter, listing["id"], _day(5), _day(5))
    assert status == 201 and rental["status"] == "accepted" and rental["expires_at"] is None


async def test_hourly_rentals_and_their_calendar(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform, rental_unit="hour", price_per_unit=50_000, quantity=2,
                                         buffer_hours=1, discounts=[])
    renter = await register_and_login(client)
    day = _day(7)
    status, rental = await _request(client, renter, listing["id"], f"{day}T10:00:00+03:00", f"{day}T13:00:00+03:00",
                                    quantity=2)
    assert status == 201, rental
    assert rental["units"] == 3 and rental["quote"]["rent"] == 3 * 2 * 50_000
    assert (rental["start"], rental["end"]) == (f"{day}T10:00:00+03:00", f"{day}T13:00:00+03:00")
    hours = await (await client.get(f"/api/v1/listings/{listing['id']}/availability",
                                    params={"from": day, "to": day})).json()
    free = {item["start"][11:16]: item["free"] for item in hours["items"]}
    # 10:00-13:00 plus the one-hour turnaround buffer.
    assert (free["09:00"], free["10:00"], free["12:00"], free["13:00"], free["14:00"]) == (2, 0, 0, 0, 2)
    status, problem = await _request(client, renter, listing["id"], f"{day}T13:00:00+03:00",
                                     f"{day}T14:00:00+03:00")
    assert (status, problem["code"]) == (409, "dates_unavailable")


async def test_an_unanswered_request_expires_and_frees_its_dates(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    _, rental = await _request(client, renter, listing["id"], _day(70), _day(71))
    moved = await platform.db.execute(
        "UPDATE entity_timers SET fire_at = now() WHERE name = $1", f"rental.expire#{rental['id']}")
    assert moved == "UPDATE 1"
    expired = await _wait_for_status(client, renter, rental["id"], "expired")
    assert expired["history"][-1]["by"] == "system"
    status, _ = await _request(client, renter, listing["id"], _day(70), _day(71))
    assert status == 201


async def test_an_active_rental_becomes_overdue_by_timer(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform, instant_book=True)
    renter = await register_and_login(client)
    _, rental = await _request(client, renter, listing["id"], _day(0), _day(1))
    code = (await _step(client, owner, rental["id"], "handover"))["handover_code"]
    await _step(client, renter, rental["id"], "confirm-handover", {"code": code})
    await platform.db.execute("UPDATE entity_timers SET fire_at = now() WHERE name = $1",
                              f"rental.overdue#{rental['id']}")
    await _wait_for_status(client, owner, rental["id"], "overdue")
    assert (await _step(client, owner, rental["id"], "return"))["status"] == "returned"


async def test_a_busy_listing_is_never_double_booked(client: Client, platform: Platform) -> None:
    """200 concurrent overlapping requests for a quantity-2 listing: every answer is 201 or 409,
    and no unit is ever held twice at one moment."""
    _, listing = await published_listing(client, platform, instant_book=True, quantity=2, discounts=[])
    renters = [await register_and_login(client) for _ in range(4)]
    rng = random.Random(7)

    async def one(gateway: Client, i: int) -> tuple[int, str, str]:
        first = 90 + rng.randrange(10)
        last = first + rng.randrange(3)
        status, _ = await _request(gateway, renters[i % 4], listing["id"], _day(first), _day(last))
        return status, _day(first), _day(last)

    # Four renters send it all: their caps on held dates (tests/e2e/test_rental_caps.py) are lifted.
    async with gateway_with(platform, max_open_rentals_per_renter=1000, max_open_rentals_per_listing=1000) as gateway:
        outcomes = await asyncio.gather(*(one(gateway, i) for i in range(200)))
    assert {status for status, _, _ in outcomes} <= {201, 409}
    won = [(date.fromisoformat(a), date.fromisoformat(b)) for status, a, b in outcomes if status == 201]
    assert won and len(won) < 200
    for offset in range(90, 102):
        day = date.fromisoformat(_day(offset))
        assert sum(1 for a, b in won if a <= day <= b) <= 2, day
    assert await rental_store.overlapping_pairs(platform.db, uuid.UUID(listing["id"])) == 0
    stored = await platform.db.fetchval(
        "SELECT count(*) FROM rentals WHERE listing_id = $1 AND status = 'accepted'", uuid.UUID(listing["id"]))
    assert stored == len(won)




async def test_a_moderator_may_cancel_but_not_accept(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    _, rental = await _request(client, renter, listing["id"], _day(110), _day(111))
    assert (await _step(client, moderator, rental["id"], "accept", expect=403))["code"] == "forbidden"
    cancelled = await _step(client, moderator, rental["id"], "cancel")
    assert cancelled["cancellation"]["by"] == "moderator"


async def test_a_repeated_request_with_one_idempotency_key_books_once(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    body = {"listing_id": listing["id"], "start": _day(120), "end": _day(121)}
    headers = {**renter.auth, "Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/api/v1/rentals", json=body, headers=headers)
    again = await client.post("/api/v1/rentals", json=body, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert (await first.json())["id"] == (await again.json())["id"]
    count = await platform.db.fetchval("SELECT count(*) FROM rentals WHERE listing_id = $1", uuid.UUID(listing["id"]))
    assert count == 1


async def test_a_paused_listing_takes_no_bookings_and_one_with_rentals_cannot_be_archived(
    client: Client, platform: Platform
) -> None:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    _, rental = await _request(client, renter, listing["id"], _day(130), _day(131))
    archive = await client.post(f"/api/v1/listings/{listing['id']}/archive", headers=owner.auth)
    assert (archive.status, (await archive.json())["code"]) == (409, "has_open_rentals")
    shrink = await client.patch(f"/api/v1/listings/{listing['id']}", json={"rental_unit": "hour"}, headers=owner.auth)
    assert (shrink.status, (await shrink.json())["code"]) == (409, "has_open_rentals")
    assert (await client.post(f"/api/v1/listings/{listing['id']}/pause", headers=owner.auth)).status == 200
    status, problem = await _request(client, renter, listing["id"], _day(140), _day(141))
    assert (status, problem["code"]) == (409, "listing_unavailable")
    # An open rental still moves while its listing is paused.
    assert (await _step(client, owner, rental["id"], "decline"))["status"] == "declined"
    assert (await client.post(f"/api/v1/listings/{listing['id']}/archive", headers=owner.auth)).status == 200

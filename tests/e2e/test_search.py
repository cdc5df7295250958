"""Search through the REST API, against a replica actor following the real event stream:
publish -> findable, edits, pause/archive -> gone, bookings -> left out for their dates,
suggestions, and the problems a bad query gets."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from actors.periods import local_day, now_utc
from search.client import SearchClient
from sharehub.errors import ApiError
from sharehub.platform import Platform
from tests.helpers import make_user_with_roles, published_listing, register_and_login

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("search_replica")


def _word() -> str:
    """A made-up word no other test's listing has (letters only: digits would split it)."""
    return "зета" + "".join("абвгдежзиклмнопрстуфхцчшщ"[int(c, 16)] for c in uuid.uuid4().hex[:8])


async def _search(client: Client, **params: Any) -> dict[str, Any]:
    resp = await client.get("/api/v1/search", params={k: str(v) for k, v in params.items()})
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, within_secs: float = 15.0) -> float:
    """Seconds until `check` holds (the index is fresh within a second; 15 s is for a loaded CI)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within_secs, what
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _ids(client: Client, **params: Any) -> list[str]:
    return [item["id"] for item in (await _search(client, **params))["items"]]


async def test_a_published_listing_becomes_findable_in_any_word_form(client: Client, platform: Platform) -> None:
    word = _word()
    _, listing = await published_listing(client, platform, title=f"Велосипед {word}",
                                         description="Горный велосипед для прогулок по лесу.")

    async def found() -> bool:
        return listing["id"] in await _ids(client, q=f"велосипеды {word}")

    await _eventually(found, "the published listing never became searchable")
    body = await _search(client, q=f"велосипеды {word}")
    item = body["items"][0]
    assert body["total"] == 1 and item["title"] == f"Велосипед {word}" and item["currency"] == "RUB"
    assert "<b>Велосипед</b>" in item["snippets"]["title"]
    assert {c["id"]: c["count"] for c in body["facets"]["categories"]}["power-tools"] == 1
    assert isinstance(body["took_ms"], float | int)


async def test_edits_pause_and_archive_reach_the_index(client: Client, platform: Platform) -> None:
    old, new = _word(), _word()
    owner, listing = await published_listing(client, platform, title=f"Палатка {old}")
    await _eventually(lambda: _has(client, listing["id"], q=old), "never indexed")
    resp = await client.patch(f"/api/v1/listings/{listing['id']}", headers=owner.auth,
                              json={"price_per_unit": 123_400, "city": "Казань"})
    assert resp.status == 200, await resp.text()
    # The price applies at once; the new city waits for a moderator (where a listing is is reviewed).
    await _eventually(lambda: _has(client, listing["id"], q=old, city="москва", price_min=123_400),
                      "the price never reached the index")
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    resp = await client.post(f"/api/v1/moderation/listings/{listing['id']}/approve", headers=moderator.auth)
    assert resp.status == 200, await resp.text()
    await _eventually(lambda: _has(client, listing["id"], q=old, city="казань", price_min=123_400),
                      "the edit never reached the index")
    assert (await client.post(f"/api/v1/listings/{listing['id']}/pause", headers=owner.auth)).status == 200
    await _eventually(lambda: _lacks(client, listing["id"], q=old), "a paused listing is still found")
    assert (await client.post(f"/api/v1/listings/{listing['id']}/resume", headers=owner.auth)).status == 200
    await _eventually(lambda: _has(client, listing["id"], q=old), "a resumed listing is not found")
    assert (await client.post(f"/api/v1/listings/{listing['id']}/archive", headers=owner.auth)).status == 200
    await _eventually(lambda: _lacks(client, listing["id"], q=old), "an archived listing is still found")
    assert await _lacks(client, listing["id"], q=new)


async def _has(client: Client, listing_id: str, **params: Any) -> bool:
    return listing_id in await _ids(client, **params)


async def _lacks(client: Client, listing_id: str, **params: Any) -> bool:
    return listing_id not in await _ids(client, **params)


async def test_a_booked_listing_is_left_out_for_its_dates(client: Client, platform: Platform) -> None:
    word = _word()
    _, listing = await published_listing(client, platform, title=f"Дрель {word}", instant_book=True)
    _, other = await published_listing(client, platform, title=f"Дрель {word} вторая", quantity=2)
    await _eventually(lambda: _has(client, other["id"], q=word), "never indexed")
    renter = await register_and_login(client)
    today = local_day(now_utc())
    start, end = (today + timedelta(days=20)).isoformat(), (today + timedelta(days=22)).isoformat()
    for target in (listing, other):
        resp = await client.post("/api/v1/rentals", headers=renter.auth,
                                 json={"listing_id": target["id"], "start": start, "end": end})
        assert resp.status == 201, await resp.text()
    dates = {"available_from": start, "available_to": end}
    # The single drill is booked out; the other has a second unit.
    await _eventually(lambda: _lacks(client, listing["id"], q=word, **dates), "booked listing still offered")
    assert await _has(client, other["id"], q=word, **dates)
    overlapping = {"available_from": (today + timedelta(days=22)).isoformat(),
                   "available_to": (today + timedelta(days=25)).isoformat()}
    assert await _lacks(client, listing["id"], q=word, **overlapping)
    later = {"available_from": (today + timedelta(days=23)).isoformat(),
             "available_to": (today + timedelta(days=25)).isoformat()}
    assert await _has(client, listing["id"], q=word, **later)


async def test_suggestions_complete_titles_and_categories(client: Client, platform: Platform) -> None:
    word = _word()
    _, listing = await published_listing(client, platform, title=f"Сапборд {word} надувной")
    await _eventually(lambda: _has(client, listing["id"], q=word), "never indexed")
    resp = await client.get("/api/v1/search/suggest", params={"q": f"сапборд {word[:6]}"})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["completions"] == [{"text": f"сапборд {word}", "count": 1}]
    assert body["titles"] == [{"id": listing["id"], "title": f"Сапборд {word} надувной"}]
    body = await (await client.get("/api/v1/search/suggest", params={"q": "электро"})).json()
    assert "power-tools" in [c["id"] for c in body["categories"]]


@pytest.mark.parametrize(("params", "code"), [
    ({"lat": "55.7"}, "validation_failed"),
    ({"sort": "distance"}, "validation_failed"),
    ({"radius_km": "5"}, "validation_failed"),
    ({"sort": "cheapest"}, "validation_failed"),
    ({"per_page": "500"}, "validation_failed"),
    ({"page": "600", "per_page": "20"}, "validation_failed"),
    ({"price_min": "-1"}, "validation_failed"),
    ({"price_min": "500", "price_max": "100"}, "validation_failed"),
    ({"available_from": "2026-12-05"}, "validation_failed"),
    ({"available_from": "2026-12-05", "available_to": "2026-12-01"}, "invalid_period"),
    ({"available_from": "2026-12-05T10:00:00"}, "validation_failed"),  # an instant needs its offset
    ({"category": "no-such-category"}, "validation_failed"),
    ({"surprise": "1"}, "validation_failed"),
])
async def test_bad_queries_get_a_problem(client: Client, params: dict[str, str], code: str) -> None:
    resp = await client.get("/api/v1/search", params=params)
    body = await resp.json()
    assert resp.status in (400, 422), body
    assert resp.content_type == "application/problem+json" and body["code"] == code


async def test_no_replica_answering_is_a_503_not_a_hang() -> None:
    client = SearchClient(timeout_secs=0.5)
    client._names, client._listed_at = ["search-nobody"], time.monotonic()  # as if just listed
    started = time.monotonic()
    with pytest.raises(ApiError) as raised:
        await client.call("search", None)
    assert raised.value.status == 503 and raised.value.code == "search_unavailable"
    assert raised.value.headers["Retry-After"] == "2"
    assert time.monotonic() - started < 5


async def test_moderators_see_the_same_public_results(client: Client, platform: Platform) -> None:
    """Search shows published listings only, to everyone: a draft is not found even by its owner."""
    word = _word()
    owner = await register_and_login(client)
    resp = await client.post("/api/v1/listings", headers=owner.auth,
                             json={"title": f"Черновик {word}", "description": "Ещё не опубликовано.",
                                   "category_id": "power-tools", "city": "Москва", "lat": 55.7, "lon": 37.6,
                                   "rental_unit": "day", "price_per_unit": 10_000, "cancellation_policy": "flexible"})
    assert resp.status == 201
    _, published = await published_listing(client, platform, title=f"Опубликовано {word}")
    await _eventually(lambda: _has(client, published["id"], q=word), "never indexed")
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    for headers in ({}, owner.auth, moderator.auth):
        resp = await client.get("/api/v1/search", params={"q": word}, headers=headers)
        assert [i["id"] for i in (await resp.json())["items"]] == [published["id"]]

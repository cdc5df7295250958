"""ml-core served by Ray Serve, end to end: the deployments answer over Serve HTTP and through
handles, pick up a newly promoted model without a restart, and the gateway's routes check who may
ask, validate the period, and answer 503 (or a stale answer) when Serve is down or slow."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer
from ray import serve

from actors.periods import local_day, now_utc
from gateway.app import build_app
from ml.client import MLClient
from ml.serving import APP_NAME
from sharehub.errors import ApiError
from sharehub.platform import Platform, open_platform
from sharehub.seed.generate import SEED_PASSWORD
from storage import listings as store
from storage import ml_models
from tests.conftest import MlWorld
from tests.helpers import LoggedIn, login, make_user_with_roles, register_and_login

pytestmark = pytest.mark.usefixtures("ml_serving")


def _question(price: int = 120_000) -> dict[str, Any]:
    start = now_utc() + timedelta(days=10)
    return {"listing": {"category_id": "tents", "city": "Москва", "rental_unit": "day", "price_per_unit": price},
            "start": start.isoformat(), "end": (start + timedelta(days=2)).isoformat(),
            "asked_at": now_utc().isoformat()}


def _days(ahead: int, length: int) -> dict[str, str]:
    first = local_day(now_utc()) + timedelta(days=ahead)
    return {"from": first.isoformat(), "to": (first + timedelta(days=length - 1)).isoformat()}


# ---------------------------------------------------------------------- the Serve app itself


def test_pricing_answers_over_serve_http_and_through_a_handle(ml_serving: str) -> None:
    over_http = requests.post(f"{ml_serving}/ml/pricing", json=_question(), timeout=30)
    assert over_http.status_code == 200, over_http.text
    answer = over_http.json()
    assert answer["price"] % 1000 == 0 and 0 < answer["probability"] < 1 and answer["model_version"] >= 1
    assert answer["range"]["low"] <= answer["range"]["high"] and answer["current"]["price"] == 120_000
    handle = serve.get_deployment_handle("Pricing", app_name=APP_NAME)
    assert handle.suggest.remote(_question()).result(timeout_s=30) == answer
    for body in ('{"listing": {}}', "[1, 2]", "not json"):
        bad = requests.post(f"{ml_serving}/ml/pricing", data=body, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"] == "bad_question", body


async def test_concurrent_questions_are_answered_in_batches(ml_serving: str) -> None:
    handle = serve.get_deployment_handle("Pricing", app_name=APP_NAME)
    questions = [_question(price) for price in range(50_000, 250_000, 2_000)]
    answers = await asyncio.gather(*(handle.suggest.remote(q) for q in questions))
    singles = [await handle.suggest_unbatched.remote(q) for q in questions[:5]]
    assert answers[:5] == singles  # a batch answers each question as it would alone
    assert len({a["price"] for a in answers}) == 1  # the suggestion does not depend on the current price
    assert [a["current"]["price"] for a in answers] == [q["listing"]["price_per_unit"] for q in questions]


async def test_similar_answers_over_serve_http_and_through_a_handle(ml_serving: str, ml_world: MlWorld) -> None:
    async with open_platform(ml_world.settings) as world:
        listing_id = str(await world.db.fetchval(
            "SELECT id FROM listings WHERE status = 'published' AND category_id = 'tents' ORDER BY id LIMIT 1"))
        over_http = await asyncio.to_thread(requests.get, f"{ml_serving}/ml/similar",
                                            params={"listing_id": listing_id, "limit": "5"}, timeout=30)
        assert over_http.status_code == 200, over_http.text
        items = over_http.json()["items"]
        assert len(items) == 5 and listing_id not in {item["id"] for item in items}
        handle = serve.get_deployment_handle("Recommender", app_name=APP_NAME)
        assert (await handle.similar.remote((listing_id, 5)))["items"] == items
        categories = await world.db.fetch("SELECT category_id FROM listings WHERE id = ANY($1::uuid[])",
                                          [item["id"] for item in items])
        # Content and co-interest blend: renters of tents also rent other kinds of things.
        assert any(row["category_id"] in ("tents", "camping-gear", "sleeping-bags", "backpacks")
                   for row in categories)
    missing = await asyncio.to_thread(requests.get, f"{ml_serving}/ml/similar", params={"listing_id": "nope"},
                                      timeout=30)
    assert missing.status_code == 404


async def test_a_listing_the_catalogue_has_not_seen_is_answered_from_its_content() -> None:
    handle = serve.get_deployment_handle("Recommender", app_name=APP_NAME)
    newcomer = {"id": str(uuid.uuid4()), "title": "Палатка туристическая четырёхместная",
                "description": "Палатка с тамбуром, непромокаемая.", "category_id": "tents",
                "parent_category_id": None, "price_per_unit": 120_000, "lat": 55.75, "lon": 37.62,
                "rental_unit": "day"}
    started = time.monotonic()
    answer = await handle.similar_many.remote([(newcomer["id"], 5, newcomer), (newcomer["id"], 5)])
    assert time.monotonic() - started < 5  # scored at once, no rebuild waited for
    assert len(answer[0]["items"]) == 5 and answer[1] == {"error": "unknown_listing"}


async def test_a_promoted_version_reaches_the_replicas_without_a_restart(ml_world: MlWorld) -> None:
    handle = serve.get_deployment_handle("Pricing", app_name=APP_NAME)
    async with open_platform(ml_world.settings) as world:
        current = await ml_models.promoted(world.db, "pricing")
        assert current is not None
        # A rollback-style promotion: the same artifact as a new version.
        version = await ml_models.record(
            world.db, kind="pricing", artifact_uri=current["artifact_uri"],
            artifact_sha256=current["artifact_sha256"], artifact_bytes=current["artifact_bytes"],
            metrics=current["metrics"], training=current["training"], decision="promoted by the test", promote=True)
    deadline = time.monotonic() + 30
    while (answer := await handle.suggest.remote(_question()))["model_version"] != version:
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.2)
    status = serve.status().applications[APP_NAME]
    assert status.status == "RUNNING" and all(
        d.status == "HEALTHY" for d in status.deployments.values()), status


# ---------------------------------------------------------------------- the gateway client


async def test_the_client_answers_503_quickly_when_serve_is_down_or_slow() -> None:
    gone = MLClient(timeout_secs=1.0, app_name="no-such-app")
    started = time.monotonic()
    with pytest.raises(ApiError) as down:
        await gone.call("Pricing", "suggest", _question(), cache_key="k")
    assert down.value.status == 503 and down.value.code == "ml_unavailable"
    assert down.value.headers["Retry-After"] and time.monotonic() - started < 5
    slow = MLClient(timeout_secs=0.001)  # no replica answers within a millisecond
    with pytest.raises(ApiError) as timed_out:
        await slow.call("Pricing", "suggest", _question(), cache_key="k")
    assert timed_out.value.status == 503


async def test_the_client_falls_back_to_the_last_answer_marked_stale() -> None:
    client = MLClient(timeout_secs=10.0)
    fresh = await client.call("Pricing", "suggest", _question(), cache_key="same question")
    assert "stale" not in fresh
    client.app_name, client.timeout_secs = "no-such-app", 1.0
    client._handles.clear()  # as after a failure: the next call looks the (now missing) app up again
    stale = await client.call("Pricing", "suggest", _question(), cache_key="same question")
    assert stale == {**fresh, "stale": True}
    with pytest.raises(ApiError):
        await client.call("Pricing", "suggest", _question(), cache_key="another question")


# ---------------------------------------------------------------------- the gateway's routes


@pytest.fixture(scope="module")
async def ml_client(ml_world: MlWorld) -> AsyncIterator[tuple[TestClient[Any, Any], Platform]]:
    """A gateway over the ML market's database (its listings are the ones Serve knows)."""
    async with open_platform(ml_world.settings) as world, TestClient(TestServer(build_app(world))) as client:
        yield client, world


async def _seeded_owner(client: TestClient[Any, Any], world: Platform) -> tuple[LoggedIn, dict[str, Any]]:
    row = await world.db.fetchrow(
        """SELECT l.id, l.rental_unit, u.email, u.id AS owner_id FROM listings l JOIN users u ON u.id = l.owner_id
           WHERE l.status = 'published' AND l.rental_unit = 'day' ORDER BY l.id LIMIT 1""")
    assert row is not None
    owner = await login(client, row["email"], SEED_PASSWORD, str(row["owner_id"]))
    return owner, dict(row)


async def test_the_owner_is_advised_on_a_listings_price(ml_client: Any) -> None:
    client, world = ml_client
    owner, listing = await _seeded_owner(client, world)
    resp = await client.get(f"/api/v1/listings/{listing['id']}/price-suggestion", params=_days(7, 3),
                            headers=owner.auth)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["listing_id"] == str(listing["id"]) and body["currency"] == "RUB" and body["rental_unit"] == "day"
    assert body["period"] == {"start": _days(7, 3)["from"], "end": _days(7, 3)["to"]}
    assert body["suggested_price"] > 0 and 0 < body["booking_probability"] < 1 and not body["stale"]
    assert body["current"]["price"] > 0 and body["range"]["low"] <= body["range"]["high"]
    admin = await make_user_with_roles(client, world, {"admin"})
    assert (await client.get(f"/api/v1/listings/{listing['id']}/price-suggestion", params=_days(7, 3),
                             headers=admin.auth)).status == 200


async def test_only_the_owner_may_ask_and_the_period_must_make_sense(ml_client: Any) -> None:
    client, world = ml_client
    owner, listing = await _seeded_owner(client, world)
    url = f"/api/v1/listings/{listing['id']}/price-suggestion"
    stranger = await register_and_login(client)
    refused = await client.get(url, params=_days(7, 3), headers=stranger.auth)
    assert refused.status == 403 and (await refused.json())["code"] == "not_listing_owner"
    assert (await client.get(url, params=_days(7, 3))).status == 401
    hours = {"from": "2027-06-10T10:00:00+03:00", "to": "2027-06-10T12:00:00+03:00"}  # a day listing's period is days
    for params in (_days(-3, 2), _days(5, 200), hours, {"from": "2027-06-12", "to": "2027-06-10"}):
        bad = await client.get(url, params=params, headers=owner.auth)
        assert bad.status == 422 and (await bad.json())["code"] == "invalid_period", params
    missing = await client.get(url, params={"from": "2027-06-10"}, headers=owner.auth)
    assert missing.status == 422 and (await missing.json())["code"] == "validation_failed"


async def test_a_draft_is_priced_before_it_exists(ml_client: Any) -> None:
    client, _ = ml_client
    user = await register_and_login(client)
    draft = {"category_id": "tents", "city": "Казань", "title": "Палатка четырёхместная", "rental_unit": "day",
             "start": _days(10, 1)["from"], "end": _days(10, 3)["to"]}
    resp = await client.post("/api/v1/pricing/suggest", json=draft, headers=user.auth)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["current"] is None and body["suggested_price"] > 0 and body["comparable_median"] > 0
    nearest = body["similar_listings"]
    assert len(nearest) >= 3 and all("алатк" in item["title"] for item in nearest[:3]), nearest
    assert all(item["price_per_unit"] > 0 and item["similarity"] > 0 for item in nearest)
    with_price = await client.post("/api/v1/pricing/suggest", json={**draft, "price_per_unit": 150_000},
                                   headers=user.auth)
    assert (await with_price.json())["current"]["price"] == 150_000
    unknown = await client.post("/api/v1/pricing/suggest", json={**draft, "category_id": "spaceships"},
                                headers=user.auth)
    assert unknown.status == 422
    assert (await client.post("/api/v1/pricing/suggest", json=draft)).status == 401


async def test_similar_listings_are_published_ones_for_anyone(ml_client: Any) -> None:
    client, world = ml_client
    _, listing = await _seeded_owner(client, world)
    resp = await client.get(f"/api/v1/listings/{listing['id']}/similar", params={"limit": 4})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert len(body["items"]) == 4 and body["model_version"] >= 1 and not body["stale"]
    assert all(item["status"] == "published" and item["id"] != str(listing["id"]) for item in body["items"])
    scores = [item["similarity"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert (await client.get(f"/api/v1/listings/{listing['id']}/similar", params={"limit": 0})).status == 422
    nobody = "00000000-0000-4000-8000-000000000000"
    assert (await client.get(f"/api/v1/listings/{nobody}/similar")).status == 404


async def test_with_dates_only_listings_free_for_them_are_offered(ml_client: Any) -> None:
    client, world = ml_client
    _, listing = await _seeded_owner(client, world)
    url = f"/api/v1/listings/{listing['id']}/similar"
    days = _days(20, 3)
    offered = (await (await client.get(url, params={"limit": 5, **days})).json())["items"]
    assert len(offered) == 5
    blocked = offered[0]["id"]
    await world.db.execute("UPDATE listings SET blocked_periods = $2 WHERE id = $1", uuid.UUID(blocked),
                           [{"start": days["from"], "end": days["from"]}])
    try:
        again = (await (await client.get(url, params={"limit": 5, **days})).json())["items"]
        assert blocked not in {item["id"] for item in again} and len(again) == 5
        later = (await (await client.get(url, params={"limit": 5, **_days(40, 3)})).json())["items"]
        assert blocked in {item["id"] for item in later}
    finally:
        await world.db.execute("UPDATE listings SET blocked_periods = '[]' WHERE id = $1", uuid.UUID(blocked))
    for params in ({"from": days["from"]}, _days(-2, 3), _days(3, 120)):
        bad = await client.get(url, params=params)
        assert bad.status == 422 and (await bad.json())["code"] == "invalid_period", params


async def test_a_listing_whose_every_unit_is_booked_is_not_free(ml_client: Any) -> None:
    _, world = ml_client
    # A booked single-unit listing that is free a month earlier: no other booking then, no day
    # blocked (picking any booking made the test depend on what the seed happened to book).
    row = await world.db.fetchrow(
        """SELECT b.listing_id, lower(b.period) AS start, upper(b.period) AS until FROM bookings b
           JOIN listings l ON l.id = b.listing_id
           WHERE l.quantity = 1 AND lower(b.period) > now() AND l.blocked_periods = '[]'
             AND NOT EXISTS (SELECT 1 FROM bookings o WHERE o.listing_id = b.listing_id
                               AND o.period && tstzrange(lower(b.period) - interval '31 days',
                                                         lower(b.period) - interval '28 days'))
           ORDER BY b.listing_id, lower(b.period) LIMIT 1""")
    assert row is not None
    first = local_day(row["start"])
    inside = await store.free_between(world.db, [row["listing_id"]], row["start"], row["until"],
                                      first_day=first, last_day=first)
    before = await store.free_between(world.db, [row["listing_id"]], row["start"] - timedelta(days=30),
                                      row["start"] - timedelta(days=29), first_day=first - timedelta(days=30),
                                      last_day=first - timedelta(days=30))
    assert inside == set() and before == {row["listing_id"]}

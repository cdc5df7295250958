"""Listings through the HTTP API and their entity actors: lifecycle, moderation, edits of
published listings, owner promotion, availability, and who may do what."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from sharehub.platform import Platform
from tests.helpers import DRILL, LoggedIn, login, make_user_with_roles, register_and_login

Client = TestClient[Any, Any]


async def _create(client: Client, owner: LoggedIn, **overrides: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/listings", json={**DRILL, **overrides}, headers=owner.auth)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def _published(client: Client, platform: Platform) -> tuple[LoggedIn, LoggedIn, dict[str, Any]]:
    owner = await register_and_login(client)
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    listing = await _create(client, owner)
    assert (await client.post(f"/api/v1/listings/{listing['id']}/submit", headers=owner.auth)).status == 200
    resp = await client.post(f"/api/v1/moderation/listings/{listing['id']}/approve", headers=moderator.auth)
    assert resp.status == 200, await resp.text()
    return owner, moderator, await resp.json()


async def test_categories_are_a_two_level_tree_in_two_languages(client: Client) -> None:
    body = await (await client.get("/api/v1/categories")).json()
    roots = {c["id"]: c for c in body["items"]}
    assert {"tools", "electronics", "photo-video", "sport", "tourism", "kids", "transport", "events"} <= set(roots)
    assert roots["tourism"]["name"] == {"ru": "Туризм", "en": "Camping and hiking"}
    assert "tents" in {c["id"] for c in roots["tourism"]["children"]}
    assert {p["code"] for p in body["cancellation_policies"]} == {"flexible", "moderate", "strict"}


async def test_a_listing_goes_from_draft_to_published_and_makes_its_author_an_owner(
    client: Client, platform: Platform
) -> None:
    owner = await register_and_login(client)
    listing = await _create(client, owner)
    assert listing["status"] == "draft" and listing["price_per_unit"] == 70000 and listing["currency"] == "RUB"
    assert [d["min_units"] for d in listing["discounts"]] == [3, 7]
    # Nobody else sees a draft.
    assert (await client.get(f"/api/v1/listings/{listing['id']}")).status == 404
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    early = await client.post(f"/api/v1/moderation/listings/{listing['id']}/approve", headers=moderator.auth)
    assert early.status == 409
    submitted = await client.post(f"/api/v1/listings/{listing['id']}/submit", headers=owner.auth)
    assert (await submitted.json())["status"] == "pending_review"
    queue = await (await client.get("/api/v1/moderation/listings", headers=moderator.auth)).json()
    assert listing["id"] in {item["id"] for item in queue["items"]}
    approved = await client.post(f"/api/v1/moderation/listings/{listing['id']}/approve", headers=moderator.auth)
    assert (await approved.json())["status"] == "published"
    public = await (await client.get(f"/api/v1/listings/{listing['id']}")).json()
    assert public["status"] == "published" and "pending_revision" not in public
    # The first publication made the author an owner (a fresh login carries the role).
    fresh = await login(client, owner.email, owner.password)
    me = await (await client.get("/api/v1/users/me", headers=fresh.auth)).json()
    assert "owner" in me["roles"]


async def test_rejection_carries_a_reason_and_the_owner_can_resubmit(client: Client, platform: Platform) -> None:
    owner = await register_and_login(client)
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    listing = await _create(client, owner)
    await client.post(f"/api/v1/listings/{listing['id']}/submit", headers=owner.auth)
    resp = await client.post(f"/api/v1/moderation/listings/{listing['id']}/reject", headers=moderator.auth,
                             json={"reason": "Добавьте фото инструмента"})
    body = await resp.json()
    assert (body["status"], body["rejection_reason"]) == ("rejected", "Добавьте фото инструмента")
    await client.patch(f"/api/v1/listings/{listing['id']}", headers=owner.auth,
                       json={"photos": [str(uuid.uuid4())]})
    again = await client.post(f"/api/v1/listings/{listing['id']}/submit", headers=owner.auth)
    assert (await again.json())["status"] == "pending_review"


async def test_editing_a_published_listing_keeps_the_old_version_visible(client: Client, platform: Platform) -> None:
    owner, moderator, listing = await _published(client, platform)
    url = f"/api/v1/listings/{listing['id']}"
    edited = await (await client.patch(url, headers=owner.auth,
                                       json={"title": "Перфоратор Bosch, новый", "price_per_unit": 80000})).json()
    assert edited["status"] == "published"
    assert edited["pending_revision"] == {"title": "Перфоратор Bosch, новый"}
    public = await (await client.get(url)).json()
    assert public["title"] == DRILL["title"] and public["price_per_unit"] == 80000  # price is not reviewed
    queue = await (await client.get("/api/v1/moderation/listings", headers=moderator.auth)).json()
    assert listing["id"] in {item["id"] for item in queue["items"]}
    await client.post(f"/api/v1/moderation/listings/{listing['id']}/approve", headers=moderator.auth)
    assert (await (await client.get(url)).json())["title"] == "Перфоратор Bosch, новый"


async def test_what_a_published_listing_is_and_where_it_is_waits_for_review(
        client: Client, platform: Platform) -> None:
    owner, moderator, listing = await _published(client, platform)
    url = f"/api/v1/listings/{listing['id']}"
    change = {"category_id": "cameras", "attributes": {"brand": "Canon"}, "city": "Казань",
              "lat": 55.79, "lon": 49.12}
    edited = await (await client.patch(url, headers=owner.auth, json={**change, "deposit": 100_000})).json()
    assert edited["pending_revision"] == change
    public = await (await client.get(url)).json()
    assert (public["category_id"], public["city"], public["lat"]) == ("power-tools", "Москва", DRILL["lat"])
    assert public["attributes"] == listing["attributes"] and public["deposit"] == 100_000  # terms apply at once
    resp = await client.post(f"/api/v1/moderation/listings/{listing['id']}/approve", headers=moderator.auth)
    assert resp.status == 200, await resp.text()
    public = await (await client.get(url)).json()
    assert {key: public[key] for key in change} == change


async def test_a_moderator_never_reviews_their_own_listing(client: Client, platform: Platform) -> None:
    author = await make_user_with_roles(client, platform, {"moderator"})
    other = await make_user_with_roles(client, platform, {"moderator", "admin"})
    listing = await (await client.post("/api/v1/listings", json=DRILL, headers=author.auth)).json()
    base = f"/api/v1/moderation/listings/{listing['id']}"
    assert (await client.post(f"/api/v1/listings/{listing['id']}/submit", headers=author.auth)).status == 200
    for action, body in (("approve", None), ("reject", {"reason": "Сам себе не судья"})):
        resp = await client.post(f"{base}/{action}", headers=author.auth, json=body)
        assert (resp.status, (await resp.json())["code"]) == (403, "own_listing")
    assert (await (await client.post(f"{base}/approve", headers=other.auth)).json())["status"] == "published"
    # An edit of the published listing waits for someone else too.
    await client.patch(f"/api/v1/listings/{listing['id']}", headers=author.auth, json={"title": "Новое название"})
    assert (await client.post(f"{base}/approve", headers=author.auth)).status == 403
    assert (await client.post(f"{base}/approve", headers=other.auth)).status == 200


async def test_pause_resume_archive(client: Client, platform: Platform) -> None:
    owner, _, listing = await _published(client, platform)
    base = f"/api/v1/listings/{listing['id']}"
    assert (await (await client.post(f"{base}/pause", headers=owner.auth)).json())["status"] == "paused"
    assert (await client.post(f"{base}/pause", headers=owner.auth)).status == 409
    assert (await (await client.post(f"{base}/resume", headers=owner.auth)).json())["status"] == "published"
    assert (await client.delete(base, headers=owner.auth)).status == 204
    assert (await client.get(base)).status == 404
    assert (await (await client.get(base, headers=owner.auth)).json())["status"] == "archived"
    assert (await client.patch(base, headers=owner.auth, json={"price_per_unit": 1})).status == 409


async def test_only_the_owner_changes_a_listing_and_only_moderators_moderate(
    client: Client, platform: Platform
) -> None:
    owner, moderator, listing = await _published(client, platform)
    stranger = await register_and_login(client)
    base = f"/api/v1/listings/{listing['id']}"
    assert (await client.patch(base, headers=stranger.auth, json={"price_per_unit": 1})).status == 404
    assert (await client.post(f"{base}/pause", headers=stranger.auth)).status == 404
    assert (await client.post(f"{base}/pause", headers=moderator.auth)).status == 403
    assert (await client.get("/api/v1/moderation/listings", headers=owner.auth)).status == 403
    assert (await client.post(f"/api/v1/moderation/listings/{listing['id']}/approve",
                              headers=stranger.auth)).status == 403
    assert (await client.patch(base, json={"price_per_unit": 1})).status == 401


async def test_bad_listing_input_is_a_precise_422(client: Client) -> None:
    owner = await register_and_login(client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**DRILL, "price_per_unit": 0}, "/price_per_unit"),
        ({**DRILL, "category_id": "no-such-category"}, "/category_id"),
        ({**DRILL, "rental_unit": "week"}, "/rental_unit"),
        ({**DRILL, "lat": 123.0}, "/lat"),
        ({**DRILL, "unknown": 1}, "/unknown"),
        ({k: v for k, v in DRILL.items() if k != "title"}, "/title"),
    ]
    for payload, path in cases:
        resp = await client.post("/api/v1/listings", json=payload, headers=owner.auth)
        assert resp.status == 422, (path, await resp.text())
        assert path in [e["path"] for e in (await resp.json())["errors"]]
    maxed = await client.post("/api/v1/listings", json={**DRILL, "min_units": 5, "max_units": 2}, headers=owner.auth)
    assert maxed.status == 422


async def test_blocked_periods_shape_availability(client: Client, platform: Platform) -> None:
    owner, _, listing = await _published(client, platform)
    base = f"/api/v1/listings/{listing['id']}"
    resp = await client.put(f"{base}/blocked-periods", headers=owner.auth,
                            json={"periods": [{"start": "2027-06-10", "end": "2027-06-12"}]})
    assert resp.status == 200
    days = await (await client.get(f"{base}/availability", params={"from": "2027-06-09", "to": "2027-06-13"})).json()
    assert [(d["date"], d["free"]) for d in days["items"]] == [
        ("2027-06-09", 1), ("2027-06-10", 0), ("2027-06-11", 0), ("2027-06-12", 0), ("2027-06-13", 1)]
    backwards = await client.put(f"{base}/blocked-periods", headers=owner.auth,
                                 json={"periods": [{"start": "2027-06-12", "end": "2027-06-10"}]})
    assert backwards.status == 422
    too_long = await client.get(f"{base}/availability", params={"from": "2027-01-01", "to": "2029-01-01"})
    assert too_long.status == 422


async def test_my_listings(client: Client) -> None:
    owner = await register_and_login(client)
    created = {(await _create(client, owner, title=f"Палатка {i}"))["id"] for i in range(3)}
    mine = await (await client.get("/api/v1/users/me/listings", headers=owner.auth)).json()
    assert {item["id"] for item in mine["items"]} == created
    drafts = await (await client.get("/api/v1/users/me/listings", params={"status": "published"},
                                     headers=owner.auth)).json()
    assert drafts["items"] == []


async def test_listing_events_reach_the_outbox(client: Client, platform: Platform) -> None:
    _, _, listing = await _published(client, platform)
    rows = await platform.db.fetch(
        "SELECT subject, event_type FROM outbox WHERE entity_id = $1 ORDER BY (payload->>'version')::int",
        listing["id"])
    assert [r["event_type"] for r in rows] == ["created", "submitted", "published"]
    assert rows[0]["subject"] == f"listing.{listing['id']}.created"


async def test_values_the_database_cannot_store_are_422_not_5xx(client: Client) -> None:
    owner = await register_and_login(client)
    for payload, path in [
        ({**DRILL, "attributes": {"brand": "Bo\u0000sch"}}, "/attributes/brand"),
        ({**DRILL, "title": "\u0000Дрель"}, "/title"),
        ({**DRILL, "city": "Москва\u0001"}, "/city"),
        ({**DRILL, "attributes": {"Brand Name": "x"}}, "/attributes/Brand Name"),
    ]:
        resp = await client.post("/api/v1/listings", json=payload, headers=owner.auth)
        assert resp.status == 422, (payload, await resp.text())
        assert any(e["path"].startswith(path) for e in (await resp.json())["errors"]), await resp.text()
    # A number too big for a 64-bit integer is still a JSON number: stored, not a 5xx.
    big = await client.post("/api/v1/listings", json={**DRILL, "attributes": {"power_w": 10**20}}, headers=owner.auth)
    assert big.status == 201

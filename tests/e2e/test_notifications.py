"""In-app notifications end to end: domain events from real bookings, moderation and chats go
through the outbox relay, JetStream and the notifications consumer (the `event_pipeline`
fixture runs them as a gateway does) into stored notifications and user-channel events; the REST
list, paging and marking read; a redelivered event changes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from actors.periods import local_day, now_utc
from sharehub import presence
from sharehub.notifications.consumer import handle_event
from sharehub.platform import Platform
from tests.helpers import DRILL, LoggedIn, published_listing, register_and_login

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("event_pipeline")
_PATIENCE_SECS = 30.0


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


async def _list(client: Client, who: LoggedIn, **query: Any) -> dict[str, Any]:
    resp = await client.get("/api/v1/notifications", headers=who.auth, params=query)
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def _eventually(client: Client, who: LoggedIn, notification_type: str,
                      where: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    """The caller's newest notification of this type (matching `where`), once the pipeline made it."""
    deadline = time.monotonic() + _PATIENCE_SECS
    while True:
        items = (await _list(client, who, limit=100))["items"]
        found: list[dict[str, Any]] = [n for n in items if n["type"] == notification_type and where(n)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, (notification_type, [n["type"] for n in items])
        await asyncio.sleep(0.1)


async def _user_events(platform: Platform, user: LoggedIn, event_type: str | None = None) -> list[dict[str, Any]]:
    rows = await platform.db.fetch(
        """SELECT payload FROM outbox WHERE entity_kind = 'user' AND entity_id = $1
             AND ($2::text IS NULL OR event_type = $2) ORDER BY seq""",
        user.user_id, event_type)
    return [row["payload"] for row in rows]


async def _book(client: Client, renter: LoggedIn, listing_id: str, start: str, end: str) -> dict[str, Any]:
    resp = await client.post("/api/v1/rentals", headers=renter.auth,
                             json={"listing_id": listing_id, "start": start, "end": end})
    body: dict[str, Any] = await resp.json()
    assert resp.status == 201, body
    return body


async def _step(client: Client, who: LoggedIn, rental_id: str, action: str, body: Any = None) -> None:
    resp = await client.post(f"/api/v1/rentals/{rental_id}/{action}", headers=who.auth, json=body)
    assert resp.status == 200, await resp.text()


async def test_owner_hears_of_approval_and_requests_and_renter_of_the_answers(client: Client,
                                                                                platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    approved = await _eventually(client, owner, "listing_approved")
    assert approved["data"]["listing_id"] == listing["id"] and approved["data"]["first"] is True
    assert approved["data"]["text"] == {"ru": f"Объявление «{DRILL['title']}» опубликовано",
                                        "en": f"Your listing “{DRILL['title']}” is published"}
    assert approved["read_at"] is None

    renter = await register_and_login(client)
    rental = await _book(client, renter, listing["id"], _day(10), _day(12))
    requested = await _eventually(client, owner, "rental_requested")
    assert requested["data"]["rental_id"] == rental["id"] and requested["data"]["listing_title"] == DRILL["title"]
    assert (requested["data"]["start"], requested["data"]["end"]) == (_day(10), _day(12))
    assert requested["data"]["total"] == rental["quote"]["total"]
    assert requested["data"]["text"]["ru"] == f"Новый запрос на аренду «{DRILL['title']}»"

    await _step(client, owner, rental["id"], "accept")
    accepted = await _eventually(client, renter, "rental_accepted")
    assert accepted["data"]["rental_id"] == rental["id"]

    other = await _book(client, renter, listing["id"], _day(20), _day(21))
    await _step(client, owner, other["id"], "decline", {"reason": "В эти дни уезжаю"})
    declined = await _eventually(client, renter, "rental_declined")
    assert declined["data"]["rental_id"] == other["id"] and declined["data"]["reason"] == "В эти дни уезжаю"

    # Nobody is told what they did themselves.
    assert {n["type"] for n in (await _list(client, renter))["items"]} == {"rental_accepted", "rental_declined"}
    owner_types = [n["type"] for n in (await _list(client, owner))["items"]]
    assert sorted(owner_types) == ["listing_approved", "rental_requested", "rental_requested"]

    # Each one went to the user's channel too, numbered 1, 2, 3 … with the unread count.
    pushed = await _user_events(platform, renter, "notification")
    assert [e["data"]["notification"]["type"] for e in pushed] == ["rental_accepted", "rental_declined"]
    assert [e["data"]["unread_count"] for e in pushed] == [1, 2]
    assert all(e["kind"] == "user" and e["entity_id"] == renter.user_id and e["version"] == 0 for e in pushed)
    # The channel also carries unread-count updates (the rental's steps are chat system messages):
    # all of it numbered 1, 2, 3 … without gaps, the notifications in order among them.
    seqs = [e["seq"] for e in await _user_events(platform, renter)]
    assert seqs == list(range(1, len(seqs) + 1)) and pushed[0]["epoch"]
    assert pushed[0]["seq"] < pushed[1]["seq"]


async def test_a_redelivered_event_changes_nothing(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    rental = await _book(client, renter, listing["id"], _day(30), _day(31))
    await _eventually(client, owner, "rental_requested")
    payload = await platform.db.fetchval(
        """SELECT payload FROM outbox WHERE entity_kind = 'rental' AND entity_id = $1
             AND event_type = 'state_changed' ORDER BY seq LIMIT 1""", rental["id"])
    # (Only notification events: the rental's chat system message may still bump the unread count.)
    before = (await _list(client, owner))["items"], await _user_events(platform, owner, "notification")
    await handle_event(platform, payload)
    await handle_event(platform, payload)
    assert ((await _list(client, owner))["items"], await _user_events(platform, owner, "notification")) == before

    # An event seen for the first time by two gateway processes at once: one notification.
    fresh = {**payload, "event_id": str(uuid.uuid4())}
    await asyncio.gather(handle_event(platform, fresh), handle_event(platform, fresh))
    made = await platform.db.fetchval("SELECT count(*) FROM notifications WHERE source_event = $1",
                                      uuid.UUID(fresh["event_id"]))
    assert made == 1


def _moderation_event(listing_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """A listing event as the relay publishes it (handled directly: the list's contents are then
    exactly these)."""
    return {"event_id": str(uuid.uuid4()), "type": event_type, "kind": "listing", "entity_id": listing_id,
            "version": 3, "occurred_at": datetime.now(UTC).isoformat(), "data": data, "seq": 3, "epoch": "e"}


async def test_list_pages_filters_and_marks_read(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    resp = await client.post("/api/v1/listings", json={**DRILL, "title": "Палатка Tramp на четверых"},
                             headers=user.auth)
    assert resp.status == 201, await resp.text()
    listing_id = (await resp.json())["id"]
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("published", {"first": True}), ("rejected", {"reason": "Нет фото"}), ("revision_approved", {}),
        ("revision_rejected", {"reason": "Реклама"}), ("published", {"first": False})]
    for event_type, data in kinds:
        await handle_event(platform, _moderation_event(listing_id, event_type, data))

    first = await _list(client, user, limit=2)
    assert first["unread_count"] == 5 and len(first["items"]) == 2 and first["next_before"]
    second = await _list(client, user, limit=2, before=first["next_before"])
    third = await _list(client, user, limit=2, before=second["next_before"])
    assert third["next_before"] is None and len(third["items"]) == 1
    items = first["items"] + second["items"] + third["items"]
    assert [n["type"] for n in items] == ["listing_approved", "listing_revision_rejected", "listing_revision_approved",
                                          "listing_rejected", "listing_approved"]  # newest first
    assert len({n["id"] for n in items}) == 5
    assert items[3]["data"]["text"]["en"] == "Your listing “Палатка Tramp на четверых” was rejected by a moderator"

    newest = items[0]["id"]
    resp = await client.post(f"/api/v1/notifications/{newest}/read", headers=user.auth)
    marked = await resp.json()
    assert resp.status == 200 and marked["id"] == newest and marked["read_at"] is not None
    again = await (await client.post(f"/api/v1/notifications/{newest}/read", headers=user.auth)).json()
    assert again["read_at"] == marked["read_at"]  # marking twice changes nothing
    unread = await _list(client, user, unread="true")
    assert unread["unread_count"] == 4 and newest not in [n["id"] for n in unread["items"]]
    assert len((await _list(client, user, unread="false"))["items"]) == 5

    resp = await client.post("/api/v1/notifications/read-all", headers=user.auth)
    assert resp.status == 200 and await resp.json() == {"updated": 4}
    assert (await (await client.post("/api/v1/notifications/read-all", headers=user.auth)).json()) == {"updated": 0}
    after = await _list(client, user, unread="true")
    assert after == {"items": [], "unread_count": 0, "next_before": None}

    read_events = [e["data"] for e in await _user_events(platform, user, "notifications_read")]
    assert read_events == [{"ids": [newest], "unread_count": 4}, {"all": True, "unread_count": 0}]
    seqs = [e["seq"] for e in await _user_events(platform, user)]
    assert seqs == list(range(1, 8))  # 5 notifications, 2 reads: gap-free


async def test_someone_elses_notification_is_not_found(client: Client, platform: Platform) -> None:
    owner, _ = await published_listing(client, platform)
    approved = await _eventually(client, owner, "listing_approved")
    stranger = await register_and_login(client)
    resp = await client.post(f"/api/v1/notifications/{approved['id']}/read", headers=stranger.auth)
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    assert (await client.post(f"/api/v1/notifications/{uuid.uuid4()}/read", headers=owner.auth)).status == 404
    assert (await _eventually(client, owner, "listing_approved"))["read_at"] is None
    assert (await client.post("/api/v1/notifications/latest/read", headers=owner.auth)).status == 422
    for bad in ({"before": "yesterday"}, {"limit": "0"}, {"unread": "maybe"}, {"page": "2"}):
        resp = await client.get("/api/v1/notifications", headers=owner.auth, params=bad)
        assert resp.status == 422, bad
    assert (await client.get("/api/v1/notifications")).status == 401


async def test_messages_to_an_offline_party_notify_once_per_chat(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    resp = await client.post("/api/v1/chats", json={"listing_id": listing["id"]}, headers=renter.auth)
    assert resp.status == 201, await resp.text()
    room = (await resp.json())["id"]

    async def send(text: str) -> None:
        sent = await client.post(f"/api/v1/chats/{room}/messages", headers=renter.auth,
                                 json={"client_msg_id": uuid.uuid4().hex, "text": text})
        assert sent.status == 201, await sent.text()

    async def badge(unread: int) -> dict[str, Any]:
        """The owner's latest chat badge event, once it shows `unread`."""
        deadline = time.monotonic() + _PATIENCE_SECS
        while True:
            badges: list[dict[str, Any]] = [e["data"] for e in await _user_events(platform, owner, "chat_unread")]
            if badges and badges[-1]["unread"] == unread:
                return badges[-1]
            assert time.monotonic() < deadline, badges
            await asyncio.sleep(0.1)

    def notices(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [n for n in items if n["type"] == "message_received"]

    await send("Здравствуйте! Перфоратор свободен в субботу?")
    notice = await _eventually(client, owner, "message_received")
    assert notice["data"]["room_id"] == room and notice["data"]["sender_id"] == renter.user_id
    assert notice["data"]["preview"] == "Здравствуйте! Перфоратор свободен в субботу?"
    assert notice["data"]["text"]["ru"] == f"Новое сообщение по объявлению «{DRILL['title']}»"
    await send("И ещё: буры есть в комплекте?")
    assert await badge(2) == {"room_id": room, "unread": 2, "total_unread": 2}
    assert len(notices((await _list(client, owner))["items"])) == 1  # one per chat until read

    # Reading the chat reads its notice too, on every device.
    assert (await client.post(f"/api/v1/chats/{room}/read", json={"up_to": 2}, headers=owner.auth)).status == 200
    await badge(0)  # written in the same transaction as the notice's read mark
    assert notices((await _list(client, owner, unread="true"))["items"]) == []
    cleared = [e["data"] for e in await _user_events(platform, owner, "notifications_read")]
    assert cleared == [{"ids": [notice["id"]], "unread_count": 1}]

    # Online: the live message is enough.
    await presence.mark_online(platform.redis, owner.user_id, "test-connection")
    try:
        await send("Жду ответа")
        await badge(1)
    finally:
        await presence.mark_offline(platform.redis, owner.user_id, "test-connection")
    assert len(notices((await _list(client, owner))["items"])) == 1

    await send("Вы здесь?")
    await badge(2)
    fresh = await _eventually(client, owner, "message_received", lambda n: n["id"] != notice["id"])
    assert fresh["data"]["preview"] == "Вы здесь?" and fresh["read_at"] is None

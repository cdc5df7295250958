"""Chat rooms over REST and the chat entity actors: one room per (listing, renter), ordered and
idempotent sends, read markers and unread counts, paging, who may see what, and a rental's steps
as system messages in the pair's room."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from actors.chat import room_id
from actors.periods import local_day, now_utc
from sharehub.chat_events import chat_consumer
from sharehub.platform import Platform
from tests.helpers import DRILL, LoggedIn, make_user_with_roles, published_listing, register_and_login

Client = TestClient[Any, Any]


async def _room(client: Client, platform: Platform) -> tuple[LoggedIn, LoggedIn, dict[str, Any], dict[str, Any]]:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    resp = await client.post("/api/v1/chats", json={"listing_id": listing["id"]}, headers=renter.auth)
    assert resp.status == 201, await resp.text()
    return owner, renter, listing, await resp.json()


async def _send(client: Client, who: LoggedIn, chat_id: str, text: str, client_msg_id: str | None = None,
                *, expect: int = 201) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/chats/{chat_id}/messages", headers=who.auth,
                             json={"client_msg_id": client_msg_id or uuid.uuid4().hex, "text": text})
    body: dict[str, Any] = await resp.json()
    assert resp.status == expect, body
    return body


async def _messages(client: Client, who: LoggedIn, chat_id: str, **query: Any) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/chats/{chat_id}/messages", headers=who.auth, params=query)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def _chat_list(client: Client, who: LoggedIn) -> dict[str, Any]:
    resp = await client.get("/api/v1/chats", headers=who.auth)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_one_room_per_listing_and_renter(client: Client, platform: Platform) -> None:
    owner, renter, listing, room = await _room(client, platform)
    assert room["id"] == str(room_id(listing["id"], renter.user_id))
    assert (room["role"], room["owner_id"], room["renter_id"]) == ("renter", owner.user_id, renter.user_id)
    assert room["listing_title"] == listing["title"] and room["channel"] == f"chat:{room['id']}"
    again = await client.post("/api/v1/chats", json={"listing_id": listing["id"]}, headers=renter.auth)
    assert again.status == 200 and (await again.json())["id"] == room["id"]
    own = await client.post("/api/v1/chats", json={"listing_id": listing["id"]}, headers=owner.auth)
    assert own.status == 422 and (await own.json())["code"] == "own_listing"


async def test_no_room_about_a_listing_nobody_may_see(client: Client, platform: Platform) -> None:
    owner = await register_and_login(client)
    draft = await client.post("/api/v1/listings", headers=owner.auth, json=DRILL)
    assert draft.status == 201, await draft.text()
    stranger = await register_and_login(client)
    for listing_id in ((await draft.json())["id"], str(uuid.uuid4())):
        resp = await client.post("/api/v1/chats", json={"listing_id": listing_id}, headers=stranger.auth)
        assert resp.status == 404 and (await resp.json())["code"] == "not_found"


async def test_messages_are_ordered_and_paged_backwards(client: Client, platform: Platform) -> None:
    owner, renter, _, room = await _room(client, platform)
    sends = [_send(client, renter if i % 2 else owner, room["id"], f"сообщение {i}") for i in range(24)]
    sent = await asyncio.gather(*sends)
    assert sorted(m["seq"] for m in sent) == list(range(1, 25))  # every message its own place
    page = await _messages(client, renter, room["id"], limit=10)
    assert [m["seq"] for m in page["items"]] == list(range(24, 14, -1)) and page["next_before"] == 15
    seen = [m["seq"] for m in page["items"]]
    while page["next_before"]:
        page = await _messages(client, renter, room["id"], limit=10, before=page["next_before"])
        seen += [m["seq"] for m in page["items"]]
    assert seen == list(range(24, 0, -1))
    by_seq = {m["seq"]: m for m in sent}
    stored = (await _messages(client, owner, room["id"], limit=1))["items"][0]
    assert stored == by_seq[24]


async def test_a_resent_message_is_stored_once(client: Client, platform: Platform) -> None:
    _, renter, _, room = await _room(client, platform)
    first = await _send(client, renter, room["id"], "Добрый день! Дрель свободна в субботу?", "m-1")
    retry = await _send(client, renter, room["id"], "Добрый день! Дрель свободна в субботу?", "m-1")
    assert retry == first
    burst = await asyncio.gather(*(_send(client, renter, room["id"], "Ещё вопрос", "m-2") for _ in range(8)))
    assert len({m["seq"] for m in burst}) == 1
    count = await platform.db.fetchval("SELECT count(*) FROM chat_messages WHERE room_id = $1",
                                       uuid.UUID(room["id"]))
    assert count == 2


async def test_read_markers_and_unread_counts(client: Client, platform: Platform) -> None:
    owner, renter, _, room = await _room(client, platform)
    for text in ("Здравствуйте!", "Можно забрать завтра?", "Спасибо"):
        await _send(client, renter, room["id"], text)
    listed = await _chat_list(client, owner)
    mine = next(r for r in listed["items"] if r["id"] == room["id"])
    assert (mine["unread"], mine["role"], mine["last_preview"]) == (3, "owner", "Спасибо")
    assert listed["total_unread"] == 3
    read = await client.post(f"/api/v1/chats/{room['id']}/read", json={"up_to": 2}, headers=owner.auth)
    assert await read.json() == {"room_id": room["id"], "read_seq": 2, "unread": 1}
    back = await client.post(f"/api/v1/chats/{room['id']}/read", json={"up_to": 1}, headers=owner.auth)
    assert (await back.json())["read_seq"] == 2  # markers never move back
    past = await client.post(f"/api/v1/chats/{room['id']}/read", json={"up_to": 99}, headers=owner.auth)
    assert await past.json() == {"room_id": room["id"], "read_seq": 3, "unread": 0}
    # Replying counts as having read: the renter's own messages are never unread for them.
    assert (await _chat_list(client, renter))["total_unread"] == 0
    reply = await _send(client, owner, room["id"], "Да, после 10 утра")
    renter_view = await (await client.get(f"/api/v1/chats/{room['id']}", headers=renter.auth)).json()
    assert (renter_view["unread"], renter_view["other_read_seq"]) == (1, reply["seq"])


async def test_only_parties_write_and_moderators_only_read(client: Client, platform: Platform) -> None:
    _, renter, _, room = await _room(client, platform)
    await _send(client, renter, room["id"], "Привет")
    stranger = await register_and_login(client)
    for method, path, body in (("GET", "", None), ("GET", "/messages", None),
                               ("POST", "/messages", {"client_msg_id": "x", "text": "hi"}),
                               ("POST", "/read", {"up_to": 1}), ("POST", "/typing", None)):
        resp = await client.request(method, f"/api/v1/chats/{room['id']}{path}", json=body, headers=stranger.auth)
        assert resp.status == 404, (method, path, await resp.text())
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    history = await _messages(client, moderator, room["id"])
    assert [m["body"] for m in history["items"]] == ["Привет"]
    resp = await client.post(f"/api/v1/chats/{room['id']}/messages", headers=moderator.auth,
                             json={"client_msg_id": "mod-1", "text": "Модератор на связи"})
    assert resp.status == 403
    # A moderator sees the room, so it is not "missing" for them - but they keep no read marker.
    resp = await client.post(f"/api/v1/chats/{room['id']}/read", headers=moderator.auth, json={"up_to": 1})
    assert (resp.status, (await resp.json())["code"]) == (403, "forbidden")
    assert (await client.get(f"/api/v1/chats/{uuid.uuid4()}", headers=renter.auth)).status == 404


async def test_bad_messages_are_refused_with_a_reason(client: Client, platform: Platform) -> None:
    _, renter, _, room = await _room(client, platform)
    path = f"/api/v1/chats/{room['id']}/messages"
    cases = [
        ({"client_msg_id": "a", "text": ""}, 422, "validation_failed"),
        ({"client_msg_id": "a", "text": "   \n "}, 422, "empty_message"),
        ({"client_msg_id": "a", "text": "я" * 4001}, 422, "validation_failed"),
        ({"client_msg_id": "a b", "text": "ok"}, 422, "validation_failed"),
        ({"client_msg_id": "a", "text": "ok", "attachments": ["not-a-uuid"]}, 422, "validation_failed"),
        ({"text": "ok"}, 422, "validation_failed"),
        ({"client_msg_id": "a", "text": "bell\x07"}, 422, "validation_failed"),
    ]
    for body, status, code in cases:
        resp = await client.post(path, json=body, headers=renter.auth)
        problem = await resp.json()
        assert (resp.status, problem["code"]) == (status, code), body
        assert resp.content_type == "application/problem+json"
    assert (await _messages(client, renter, room["id"]))["items"] == []
    ok = await _send(client, renter, room["id"], "  с пробелами  ", "att-1")
    assert (ok["body"], ok["client_msg_id"]) == ("с пробелами", "att-1")


async def test_rental_steps_appear_in_the_pairs_room(client: Client, platform: Platform) -> None:
    owner, renter, listing, room = await _room(client, platform)
    await _send(client, renter, room["id"], "Хочу взять на выходные")
    day = local_day(now_utc()) + timedelta(days=20)
    resp = await client.post("/api/v1/rentals", headers=renter.auth, json={
        "listing_id": listing["id"], "start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()})
    assert resp.status == 201, await resp.text()
    rental = await resp.json()
    assert rental["chat_id"] == room["id"]
    accept = await client.post(f"/api/v1/rentals/{rental['id']}/accept", headers=owner.auth)
    assert accept.status == 200, await accept.text()
    events = await platform.db.fetch(
        "SELECT payload FROM outbox WHERE entity_kind = 'rental' AND entity_id = $1 ORDER BY seq", rental["id"])
    assert [e["payload"]["seq"] for e in events] == list(range(1, len(events) + 1))
    handle = chat_consumer(platform).handle
    for event in events:
        await handle(event["payload"])
        await handle(event["payload"])  # redelivered: no second message
    history = (await _messages(client, renter, room["id"]))["items"]
    assert [(m["kind"], m["body"]) for m in reversed(history)] == [
        ("text", "Хочу взять на выходные"), ("system", "rental.requested"), ("system", "rental.accepted")]
    accepted = history[0]
    assert accepted["sender_id"] is None and accepted["data"]["rental_id"] == rental["id"]
    assert accepted["data"]["text"]["ru"] == "Владелец подтвердил аренду."
    view = await (await client.get(f"/api/v1/chats/{room['id']}", headers=owner.auth)).json()
    assert view["rental_id"] == rental["id"] and view["unread"] == 3


async def test_a_booking_without_an_inquiry_opens_the_room(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform, instant_book=True)
    renter = await register_and_login(client)
    day = local_day(now_utc()) + timedelta(days=30)
    resp = await client.post("/api/v1/rentals", headers=renter.auth, json={
        "listing_id": listing["id"], "start": day.isoformat(), "end": day.isoformat()})
    assert resp.status == 201, await resp.text()
    rental = await resp.json()
    event = await platform.db.fetchrow(
        "SELECT payload FROM outbox WHERE entity_kind = 'rental' AND entity_id = $1 AND seq = 1", rental["id"])
    assert event is not None
    await chat_consumer(platform).handle(event["payload"])
    rooms = (await _chat_list(client, owner))["items"]
    assert [r["id"] for r in rooms] == [rental["chat_id"]]
    history = (await _messages(client, owner, rental["chat_id"]))["items"]
    assert [(m["body"], m["data"]["text"]["en"]) for m in history] == [
        ("rental.accepted", "The rental was booked instantly.")]


async def test_chat_events_are_numbered_per_room(client: Client, platform: Platform) -> None:
    owner, renter, _, room = await _room(client, platform)
    await _send(client, renter, room["id"], "Первое")
    await _send(client, owner, room["id"], "Второе")
    await client.post(f"/api/v1/chats/{room['id']}/read", json={"up_to": 2}, headers=renter.auth)
    rows = await platform.db.fetch(
        "SELECT event_type, seq, payload FROM outbox WHERE entity_kind = 'chat' AND entity_id = $1 ORDER BY seq",
        room["id"])
    assert [(r["event_type"], r["seq"]) for r in rows] == [
        ("opened", 1), ("message_sent", 2), ("message_sent", 3), ("read", 4)]
    assert {r["payload"]["epoch"] for r in rows} == {rows[0]["payload"]["epoch"]}
    assert rows[2]["payload"]["data"]["message"]["body"] == "Второе"


async def test_rooms_are_paged_by_activity_time(client: Client, platform: Platform) -> None:
    renter = await register_and_login(client)
    opened = []
    for _ in range(3):
        _, listing = await published_listing(client, platform)
        resp = await client.post("/api/v1/chats", json={"listing_id": listing["id"]}, headers=renter.auth)
        assert resp.status == 201, await resp.text()
        opened.append((await resp.json())["id"])
    first = await (await client.get("/api/v1/chats", params={"limit": 2}, headers=renter.auth)).json()
    assert [r["id"] for r in first["items"]] == opened[:0:-1] and first["next_before"]
    rest = await (await client.get("/api/v1/chats", params={"limit": 2, "before": first["next_before"]},
                                   headers=renter.auth)).json()
    assert ([r["id"] for r in rest["items"]], rest["next_before"]) == ([opened[0]], None)
    # The cursor is an RFC 3339 instant with an offset, nothing looser.
    for bad in ("0.5", "2027-06-01", "2027-06-01T12:00:00", "2027-02-30T00:00:00Z", "0001-01-01T00:00:00+01:00"):
        resp = await client.get("/api/v1/chats", params={"before": bad}, headers=renter.auth)
        assert resp.status == 422 and (await resp.json())["code"] == "validation_failed", bad

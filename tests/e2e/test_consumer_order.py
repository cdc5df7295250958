"""Per-entity order across gateway processes: two real `sharehub gateway` processes (and the test
process, when the session runs the event pipeline) pull the same durable consumers; bursts of
quick steps on many rentals must still land in each pair's chat room as system messages in
exactly the order of the rental's transitions, each once."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta
from typing import Any

import aiohttp
import nats.js.errors
from aiohttp.test_utils import TestClient

from actors.chat import room_id
from actors.periods import local_day, now_utc
from actors.relay import STREAM
from sharehub.chat_events import CONSUMER
from sharehub.platform import Platform
from tests.helpers import DRILL, LoggedIn, make_user_with_roles, register_and_login

Client = TestClient[Any, Any]

_LISTINGS = 8
_RENTERS_PER_LISTING = 4  # one rental each, on disjoint days: 32 rentals
_PATIENCE_SECS = 90.0
# What each rental goes through, as (who, action, body) and the system message it leaves.
_EXTEND_ASK = ("renter", "extend", "extend_ask")
_EXTEND_NO = ("owner", "extend", {"decision": "decline"})
_STEPS: tuple[tuple[str, str, Any], ...] = (
    ("owner", "accept", None), _EXTEND_ASK, _EXTEND_NO, _EXTEND_ASK, _EXTEND_NO, ("renter", "cancel", None))
_EXPECTED = ["rental.requested", "rental.accepted", "rental.extension_requested", "rental.extension_declined",
             "rental.extension_requested", "rental.extension_declined", "rental.cancelled"]


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


async def _listings(client: Client, platform: Platform, owner: LoggedIn, n: int) -> list[str]:
    moderator = await make_user_with_roles(client, platform, {"moderator"})

    async def one(i: int) -> str:
        resp = await client.post("/api/v1/listings", json={**DRILL, "title": f"Шуруповёрт Makita №{i}"},
                                 headers=owner.auth)
        assert resp.status == 201, await resp.text()
        listing_id: str = (await resp.json())["id"]
        assert (await client.post(f"/api/v1/listings/{listing_id}/submit", headers=owner.auth)).status == 200
        approved = await client.post(f"/api/v1/moderation/listings/{listing_id}/approve", headers=moderator.auth)
        assert approved.status == 200, await approved.text()
        return listing_id

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _both_gateways_pull(platform: Platform) -> None:
    """Until the chat consumer exists and at least two processes have a pull waiting on it."""
    assert platform.nats is not None
    js = platform.nats.jetstream()
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # not created yet
            if ((await js.consumer_info(STREAM, CONSUMER)).num_waiting or 0) >= 2:
                return
        assert time.monotonic() < deadline, "the gateways' consumers never started pulling"
        await asyncio.sleep(0.1)


async def _walk(http: aiohttp.ClientSession, gateways: list[str], i: int, *, owner: LoggedIn, renter: LoggedIn,
                listing_id: str, start: int) -> str:
    """Book and step one rental as fast as the API answers, alternating between the gateways."""
    resp = await http.post(f"{gateways[i % 2]}/api/v1/rentals", headers=renter.auth,
                           json={"listing_id": listing_id, "start": _day(start), "end": _day(start)})
    assert resp.status == 201, await resp.text()
    rental_id: str = (await resp.json())["id"]
    for n, (who, action, body) in enumerate(_STEPS):
        payload = {"end": _day(start + 1)} if body == "extend_ask" else body
        actor = owner if who == "owner" else renter
        resp = await http.post(f"{gateways[(i + n + 1) % 2]}/api/v1/rentals/{rental_id}/{action}",
                               headers=actor.auth, json=payload)
        assert resp.status == 200, (action, await resp.text())
    return rental_id


async def _system_messages(platform: Platform, rooms: list[uuid.UUID]) -> dict[uuid.UUID, list[tuple[str, str]]]:
    rows = await platform.db.fetch(
        """SELECT room_id, body, data->>'rental_id' AS rental_id FROM chat_messages
           WHERE room_id = ANY($1::uuid[]) AND kind = 'system' ORDER BY room_id, seq""", rooms)
    found: dict[uuid.UUID, list[tuple[str, str]]] = {room: [] for room in rooms}
    for row in rows:
        found[row["room_id"]].append((row["body"], row["rental_id"]))
    return found


async def test_each_rentals_steps_reach_its_chat_in_order_across_gateway_processes(
    client: Client, platform: Platform, live_gateway: str, second_gateway: str
) -> None:
    owner = await register_and_login(client)
    listings = await _listings(client, platform, owner, _LISTINGS)
    renters = list(await asyncio.gather(*(register_and_login(client)
                                          for _ in range(_LISTINGS * _RENTERS_PER_LISTING))))
    await _both_gateways_pull(platform)

    gateways = [live_gateway, second_gateway]
    async with aiohttp.ClientSession() as http:
        rentals = await asyncio.gather(*(
            _walk(http, gateways, i, owner=owner, renter=renter, listing_id=listings[i % _LISTINGS],
                  start=40 + 3 * (i // _LISTINGS))
            for i, renter in enumerate(renters)))
    rooms = {room_id(listings[i % _LISTINGS], renter.user_id): rentals[i] for i, renter in enumerate(renters)}

    deadline = time.monotonic() + _PATIENCE_SECS
    while True:
        found = await _system_messages(platform, list(rooms))
        if all(len(messages) >= len(_EXPECTED) for messages in found.values()):
            break
        assert time.monotonic() < deadline, {str(r): m for r, m in found.items() if len(m) < len(_EXPECTED)}
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # a duplicate arriving late would show up now
    found = await _system_messages(platform, list(rooms))
    wrong = {rooms[room]: [body for body, _ in messages] for room, messages in found.items()
             if [body for body, _ in messages] != _EXPECTED}
    assert not wrong, f"{len(wrong)} of {len(rooms)} rentals out of order or duplicated: {wrong}"
    assert all(rental == rooms[room] for room, messages in found.items() for _, rental in messages)

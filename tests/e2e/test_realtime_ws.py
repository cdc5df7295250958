"""The websocket gateway with real clients (the `websockets` library), NATS, Postgres, Redis and
the entity actors:
handshake auth and origin, every channel's authorization, live events after REST actions, resume
with `since` after a drop (nothing missed, nothing twice), resync, two gateway processes, slow
consumers, revocation and expiry, bad frames, rate limits, chats (send, read, typing, presence),
the REST fallback, and catching up after NATS loses messages."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import websockets
from aiohttp.test_utils import TestClient, TestServer
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from actors.periods import local_day, now_utc
from actors.relay import ensure_stream, run_relay
from gateway.app import build_app
from gateway.realtime.limits import BURST as RAW_BURST
from gateway.realtime.metrics import WS_SLOW_CONSUMER_CLOSES
from gateway.realtime.routes import HUB
from sharehub.platform import Platform
from sharehub.security.tokens import TokenService
from storage.db import transaction
from storage.runtime import add_outbox_events
from tests.helpers import DRILL, LoggedIn, make_user_with_roles, published_listing, register_and_login

Client = TestClient[Any, Any]
ALLOWED_ORIGIN = "https://app.sharehub.test"  # the session settings' CORS allowlist
BURST = int(RAW_BURST)


@pytest.fixture(scope="module", autouse=True)
async def relay(platform: Platform) -> AsyncIterator[None]:
    """The outbox relay (a gateway process runs one; the in-process `client` app does not)."""
    assert platform.nats is not None
    js = platform.nats.jetstream()
    await ensure_stream(js)
    stopping = asyncio.Event()
    task = asyncio.create_task(run_relay(platform.db, js, stopping))
    yield
    stopping.set()
    await task


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"socket closed with {code}")
        self.code = code


class Ws:
    """A test client: splits coalesced frames ("\\n"-separated) into messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: deque[dict[str, Any]] = deque()
        self.frames = 0

    async def send(self, **message: Any) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def next(self, wait: float = 10.0) -> dict[str, Any]:
        while not self.pending:
            try:
                # Cancelling recv() on the timeout loses nothing (websockets documents it).
                frame = await asyncio.wait_for(self.ws.recv(), wait)
            except ConnectionClosed:
                raise Closed(self.ws.close_code) from None
            assert isinstance(frame, str), f"the server sends text frames only, got {frame!r}"
            self.frames += 1
            self.pending.extend(orjson.loads(line) for line in frame.split("\n"))
        return self.pending.popleft()

    async def expect(self, kind: str, wait: float = 10.0, *, skip: tuple[str, ...] = (),
                     **fields: Any) -> dict[str, Any]:
        """The next message (not counting those of a type in `skip`), which must be of `kind` and
        have `fields`."""
        message = await self.next(wait)
        while message["type"] in skip:
            message = await self.next(wait)
        assert message["type"] == kind, message
        for key, value in fields.items():
            assert message.get(key) == value, (key, message)
        return message

    async def until(self, kind: str, wait: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Skip messages until one of `kind` with `fields` comes."""
        deadline = time.monotonic() + wait
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                return message

    async def quiet(self, secs: float = 0.7) -> list[dict[str, Any]]:
        """Whatever arrives within `secs` (expected: nothing)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + secs
        while True:
            try:
                got.append(await self.next(max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                return got

    async def closed(self, wait: float = 10.0) -> int | None:
        """Read until the server closes; its close code."""
        deadline = time.monotonic() + wait
        while True:
            try:
                await self.next(max(0.01, deadline - time.monotonic()))
            except Closed as closed:
                return closed.code

    async def subscribe(self, channel: str, **extra: Any) -> dict[str, Any]:
        await self.send(type="subscribe", channel=channel, **extra)
        return await self.expect("subscribed", channel=channel, skip=("presence",))

    async def close(self) -> None:
        await self.ws.close()


async def open_ws(url: str, *, token: str | None = None, origin: str | None = None,
                  headers: dict[str, str] | None = None) -> Ws:
    """A websockets client as the tests need it: like a browser, it reads whatever arrives (no
    queue limit, no keepalive pings of its own, no compression), and it offers the bearer
    subprotocol when given a token."""
    ws = await websockets.connect(
        url, subprotocols=[Subprotocol("bearer"), Subprotocol(token)] if token else None,
        origin=Origin(origin) if origin else None, additional_headers=headers, compression=None,
        max_size=4 * 2**20, max_queue=None, ping_interval=None, proxy=None)
    return Ws(ws)


def ws_url(client: Client, **query: str) -> str:
    return f"ws://{client.host}:{client.port}/ws" + (f"?{urlencode(query)}" if query else "")


async def connect(client: Client, who: LoggedIn, *, origin: str | None = None) -> Ws:
    ws = await open_ws(ws_url(client), token=who.access_token, origin=origin)
    assert ws.ws.subprotocol == "bearer"
    return ws


async def connect_to(base: str, who: LoggedIn) -> Ws:
    """To a gateway process at `base` (http://host:port)."""
    return await open_ws(base.replace("http://", "ws://", 1) + "/ws", token=who.access_token)


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


async def _book(client: Client, renter: LoggedIn, listing_id: str, offset: int) -> dict[str, Any]:
    resp = await client.post("/api/v1/rentals", headers=renter.auth,
                             json={"listing_id": listing_id, "start": _day(offset), "end": _day(offset + 1)})
    body: dict[str, Any] = await resp.json()
    assert resp.status == 201, body
    return body


async def _block(client: Client, owner: LoggedIn, listing_id: str, offset: int) -> None:
    """An availability_changed event on the listing's channel, cheaply."""
    resp = await client.put(f"/api/v1/listings/{listing_id}/blocked-periods", headers=owner.auth,
                            json={"periods": [{"start": _day(offset), "end": _day(offset)}]})
    assert resp.status == 200, await resp.text()


async def _room(client: Client, platform: Platform) -> tuple[LoggedIn, LoggedIn, dict[str, Any]]:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    resp = await client.post("/api/v1/chats", json={"listing_id": listing["id"]}, headers=renter.auth)
    assert resp.status == 201, await resp.text()
    return owner, renter, await resp.json()


# ------------------------------------------------------------------------------- handshake


async def test_subprotocol_header_and_query_tokens_open_a_socket(client: Client) -> None:
    user = await register_and_login(client)
    by_protocol = await connect(client, user)
    await by_protocol.send(type="ping", id="p1")
    assert await by_protocol.next() == {"type": "pong", "id": "p1"}
    for ws in (await open_ws(ws_url(client), headers=user.auth),
               await open_ws(ws_url(client, access_token=user.access_token))):
        assert ws.ws.subprotocol is None
        await ws.send(type="ping")
        assert await ws.next() == {"type": "pong"}
        await ws.close()
    await by_protocol.close()


async def test_no_or_a_bad_token_is_a_401_problem_before_the_upgrade(client: Client) -> None:
    user = await register_and_login(client)
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    for headers in ({}, {"Sec-WebSocket-Protocol": "bearer"}, {"Sec-WebSocket-Protocol": "bearer, nope"},
                    {"Authorization": "Bearer nope"}):
        resp = await client.get("/ws", headers={**upgrade, **headers})
        assert resp.status == 401, headers
        assert resp.content_type == "application/problem+json"
    resp = await client.get("/ws", params={"access_token": "nope"}, headers=upgrade)
    assert resp.status == 401
    # A plain GET (no upgrade) with a valid token: told to upgrade.
    plain = await client.get("/ws", headers=user.auth)
    assert plain.status == 426 and (await plain.json())["code"] == "upgrade_required"


async def test_origin_must_be_allowed_or_this_host(client: Client) -> None:
    user = await register_and_login(client)
    with pytest.raises(InvalidStatus) as refused:
        await connect(client, user, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    host = f"http://{client.host}:{client.port}"
    for origin in (ALLOWED_ORIGIN, host):
        ws = await connect(client, user, origin=origin)
        await ws.send(type="ping")
        await ws.expect("pong")
        await ws.close()


# ---------------------------------------------------------------------------- subscriptions


async def test_subscribe_unsubscribe_and_ids_are_echoed(client: Client) -> None:
    user = await register_and_login(client)
    ws = await connect(client, user)
    await ws.send(type="subscribe", channel="user:me", id="a")
    subscribed = await ws.expect("subscribed", channel="user:me", id="a")
    assert isinstance(subscribed["seq"], int) and isinstance(subscribed["epoch"], str)
    await ws.send(type="subscribe", channel="user:me", id="b")
    await ws.expect("error", code="already_subscribed", id="b")
    await ws.send(type="unsubscribe", channel="user:me", id="c")
    await ws.expect("unsubscribed", channel="user:me", id="c")
    await ws.send(type="unsubscribe", channel="user:me")  # again: still fine
    await ws.expect("unsubscribed", channel="user:me")
    await ws.subscribe("user:me")
    hub = client.app[HUB]
    assert ("user", user.user_id) in hub.channels
    await ws.close()
    for _ in range(50):  # the last watcher left: the channel (and its NATS subscription) goes
        if ("user", user.user_id) not in hub.channels:
            break
        await asyncio.sleep(0.05)
    assert ("user", user.user_id) not in hub.channels


async def test_a_socket_watches_at_most_100_channels(client: Client) -> None:
    owner = await register_and_login(client)  # an owner may watch its own drafts
    ids = []
    for _ in range(101):
        resp = await client.post("/api/v1/listings", headers=owner.auth, json=DRILL)
        assert resp.status == 201
        ids.append((await resp.json())["id"])
    ws = await connect(client, owner)
    for listing_id in ids[:100]:
        await ws.send(type="subscribe", channel=f"listing:{listing_id}")
    for _ in range(100):
        await ws.expect("subscribed")
    await ws.send(type="subscribe", channel=f"listing:{ids[100]}", id="101")
    await ws.expect("error", code="too_many_subscriptions", id="101")
    await ws.close()


async def test_every_channel_kind_is_authorized(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    renter, stranger = await register_and_login(client), await register_and_login(client)
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    rental = await _book(client, renter, listing["id"], 20)
    room = await (await client.post("/api/v1/chats", json={"listing_id": listing["id"]},
                                    headers=renter.auth)).json()
    draft = await (await client.post("/api/v1/listings", headers=owner.auth, json=DRILL)).json()
    allowed = [
        (owner, [f"listing:{listing['id']}", f"listing:{draft['id']}", f"rental:{rental['id']}",
                 f"chat:{room['id']}", "user:me"]),
        (renter, [f"listing:{listing['id']}", f"rental:{rental['id']}", f"chat:{room['id']}"]),
        (moderator, [f"listing:{draft['id']}", f"rental:{rental['id']}", f"chat:{room['id']}"]),
        (stranger, [f"listing:{listing['id']}", "user:me"]),
    ]
    refused = [f"listing:{draft['id']}", f"rental:{rental['id']}", f"chat:{room['id']}",
               f"listing:{uuid.uuid4()}", f"rental:{uuid.uuid4()}", f"chat:{uuid.uuid4()}"]
    for who, channels in allowed:
        ws = await connect(client, who)
        for channel in channels:
            await ws.subscribe(channel)
        if who is stranger:
            for channel in refused:
                await ws.send(type="subscribe", channel=channel, id=channel)
                await ws.until("error", code="not_found", id=channel)  # (skipping chat presence)
        await ws.close()
    ws = await connect(client, stranger)
    for bad in (f"user:{owner.user_id}", "listing:42", "order:1", "", 7):
        await ws.send(type="subscribe", channel=bad)
        await ws.expect("error", code="validation_failed")
    await ws.close()


# ------------------------------------------------------------------------------ live events


async def test_live_availability_after_a_booking_filtered_for_the_public(client: Client,
                                                                         platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    channel = f"listing:{listing['id']}"
    public, full = await connect(client, await register_and_login(client)), await connect(client, owner)
    seq = (await public.subscribe(channel))["seq"]
    assert (await full.subscribe(channel))["seq"] == seq
    renter = await register_and_login(client)
    rental = await _book(client, renter, listing["id"], 10)
    seen = await public.expect("event", channel=channel, event="availability_changed", seq=seq + 1)
    assert seen["data"]["change"] == "held" and "rental_id" not in seen["data"]
    owner_seen = await full.expect("event", channel=channel, event="availability_changed", seq=seq + 1)
    assert owner_seen["data"]["rental_id"] == rental["id"] and owner_seen["epoch"] == seen["epoch"]
    # A content edit waits for review (private); a price change applies at once (public).
    resp = await client.patch(f"/api/v1/listings/{listing['id']}", headers=owner.auth,
                              json={"title": "Перфоратор Makita HR2470", "price_per_unit": 80000})
    assert resp.status == 200, await resp.text()
    owner_events = [(await full.expect("event"))["event"] for _ in range(2)]
    assert sorted(owner_events) == ["revision_submitted", "updated"]
    updated = await public.expect("event", event="updated")
    assert updated["seq"] in (seq + 2, seq + 3)
    assert await public.quiet(0.5) == []
    await public.close()
    await full.close()


async def test_resume_after_a_dropped_connection_misses_nothing_and_repeats_nothing(
        client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    channel = f"listing:{listing['id']}"
    ws = await connect(client, owner)
    subscribed = await ws.subscribe(channel)
    epoch, seq = subscribed["epoch"], subscribed["seq"]
    for offset in (30, 31):
        await _block(client, owner, listing["id"], offset)
        seq = (await ws.expect("event", seq=seq + 1))["seq"]
    # The network drops: no close handshake, the server finds out on its own.
    transport_socket = ws.ws.transport.get_extra_info("socket")
    with socket.fromfd(transport_socket.fileno(), socket.AF_INET, socket.SOCK_STREAM) as raw:
        raw.shutdown(socket.SHUT_RDWR)  # (a duplicate descriptor of the same socket)
    await ws.closed()
    for offset in (32, 33, 34):
        await _block(client, owner, listing["id"], offset)
    again = await connect(client, owner)
    await again.send(type="subscribe", channel=channel, since=seq, epoch=epoch, id="resume")
    resumed = await again.expect("subscribed", id="resume")
    assert resumed["epoch"] == epoch and resumed["seq"] >= seq + 3
    missed = [await again.expect("event") for _ in range(resumed["seq"] - seq)]
    assert [m["seq"] for m in missed] == list(range(seq + 1, resumed["seq"] + 1))
    await _block(client, owner, listing["id"], 35)
    live = await again.expect("event")
    assert live["seq"] == resumed["seq"] + 1
    assert await again.quiet(0.5) == []  # nothing twice
    await again.close()


async def test_resync_when_the_history_cannot_be_replayed(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    channel = f"listing:{listing['id']}"
    for offset in (40, 41, 42):
        await _block(client, owner, listing["id"], offset)
    ws = await connect(client, owner)
    head = await ws.subscribe(channel)
    await ws.send(type="unsubscribe", channel=channel)
    await ws.expect("unsubscribed")
    cases = [
        {"since": head["seq"] + 5},  # ahead of the channel
        {"since": 0, "epoch": "0ther0ne"},  # another history
    ]
    for case in cases:
        await ws.send(type="subscribe", channel=channel, **case)
        await ws.expect("subscribed", seq=head["seq"])
        await ws.expect("resync", channel=channel, seq=head["seq"], epoch=head["epoch"])
        await ws.send(type="unsubscribe", channel=channel)
        await ws.expect("unsubscribed")
    # Retention purged the oldest events: a client further behind refetches over REST.
    await platform.db.execute(
        "DELETE FROM outbox WHERE entity_kind = 'listing' AND entity_id = $1 AND seq <= 2", listing["id"])
    await ws.send(type="subscribe", channel=channel, since=0, epoch=head["epoch"])
    await ws.expect("subscribed")
    await ws.expect("resync", seq=head["seq"])
    await ws.send(type="unsubscribe", channel=channel)
    await ws.expect("unsubscribed")
    await ws.send(type="subscribe", channel=channel, since=2, epoch=head["epoch"])  # still replayable
    await ws.expect("subscribed")
    assert [(await ws.expect("event"))["seq"] for _ in range(head["seq"] - 2)] == list(range(3, head["seq"] + 1))
    await ws.close()


async def test_a_gap_and_a_nats_reconnect_are_filled_from_the_outbox(client: Client, platform: Platform) -> None:
    """Events NATS never delivered to this gateway (published while it was away) reach the client
    in order: a later event reveals the gap; a reconnect makes every channel catch up."""
    user = await register_and_login(client)
    ws = await connect(client, user)
    start = (await ws.subscribe("user:me"))["seq"]
    await _user_event(platform, user.user_id, "missed-1", published=True)  # NATS never sees it
    await _user_event(platform, user.user_id, "live-2", published=False)  # the relay publishes it
    first, second = await ws.expect("event"), await ws.expect("event")
    assert (first["seq"], second["seq"]) == (start + 1, start + 2)
    assert (first["data"]["notification"]["type"], second["data"]["notification"]["type"]) == ("missed-1", "live-2")
    await _user_event(platform, user.user_id, "missed-3", published=True)
    assert await ws.quiet(0.5) == []
    assert platform.nats is not None
    platform.nats.stats["reconnects"] += 1  # what the hub sees after NATS came back
    caught_up = await ws.expect("event", wait=5)
    assert (caught_up["seq"], caught_up["data"]["notification"]["type"]) == (start + 3, "missed-3")
    await ws.close()


async def _user_event(platform: Platform, user_id: str, label: str, *, published: bool) -> None:
    event_id = uuid.uuid4()
    notification: dict[str, Any] = {"id": str(uuid.uuid4()), "type": label, "data": {},
                                    "created_at": datetime.now(UTC).isoformat(), "read_at": None}
    payload = {"event_id": str(event_id), "type": "notification", "kind": "user", "entity_id": user_id,
               "version": 1, "occurred_at": datetime.now(UTC).isoformat(), "data": {"notification": notification}}
    async with transaction(platform.db, "test_user_event") as conn:
        await add_outbox_events(conn, [(event_id, f"user.{user_id}.notification", "user", user_id, "notification",
                                        payload)])
        if published:
            await conn.execute("UPDATE outbox SET published_at = now() WHERE id = $1", event_id)


# ------------------------------------------------------------------------- two gateways


async def test_two_gateway_processes_relay_to_each_other(client: Client, platform: Platform, live_gateway: str,
                                                        second_gateway: str) -> None:
    owner, listing = await published_listing(client, platform)
    channel = f"listing:{listing['id']}"
    renter = await register_and_login(client)
    async with aiohttp.ClientSession() as http:
        watcher = await connect_to(second_gateway, await register_and_login(client))
        seq = (await watcher.subscribe(channel))["seq"]
        resp = await http.post(f"{live_gateway}/api/v1/rentals", headers=renter.auth,
                               json={"listing_id": listing["id"], "start": _day(50), "end": _day(51)})
        assert resp.status == 201, await resp.text()
        event = await watcher.expect("event", channel=channel, event="availability_changed", seq=seq + 1)
        assert event["data"]["change"] == "held"
        # A chat between clients of the two processes.
        room = await (await http.post(f"{live_gateway}/api/v1/chats", json={"listing_id": listing["id"]},
                                      headers=renter.auth)).json()
        on_first = await connect_to(live_gateway, renter)
        on_second = await connect_to(second_gateway, owner)
        for ws in (on_first, on_second):
            await ws.subscribe(f"chat:{room['id']}")
        await on_first.send(type="send", channel=f"chat:{room['id']}", client_msg_id="x-1", text="Добрый день!")
        reply = await on_first.until("reply")
        # (The booking's own system message may come first: the platform writes rental steps
        # into the pair's room.)
        got = await on_second.until("event", event="message_sent")
        while got["data"]["message"]["kind"] == "system":
            got = await on_second.until("event", event="message_sent")
        assert got["data"]["message"]["body"] == "Добрый день!" == reply["data"]["body"]
        for ws in (watcher, on_first, on_second):
            await ws.close()


# ------------------------------------------------------------------------ closing sockets


async def test_logout_closes_the_socket_within_two_seconds(client: Client) -> None:
    user = await register_and_login(client)
    ws = await connect(client, user)
    await ws.subscribe("user:me")
    resp = await client.post("/api/v1/auth/logout", headers=user.auth)
    assert resp.status == 204
    started = time.monotonic()
    assert await ws.closed(5) == 4001
    assert time.monotonic() - started < 2.5
    with pytest.raises(InvalidStatus) as refused:
        await connect(client, user)
    assert refused.value.response.status_code == 401


async def test_a_ban_closes_every_socket_of_the_user(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    admin = await make_user_with_roles(client, platform, {"admin"})
    sockets = [await connect(client, user) for _ in range(2)]
    resp = await client.put(f"/api/v1/admin/users/{user.user_id}/status", headers=admin.auth,
                            json={"status": "banned"})
    assert resp.status == 200, await resp.text()
    assert [await ws.closed(5) for ws in sockets] == [4001, 4001]


async def test_an_expiring_token_closes_the_socket(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    claims = platform.tokens.verify_access(user.access_token)
    short = TokenService(platform.tokens.keys, issuer=platform.settings.jwt_issuer,
                         audience=platform.settings.jwt_audience, access_ttl_secs=2, refresh_ttl_secs=60)
    token, _ = short.issue_access(claims.user_id, claims.session_id, claims.roles, claims.auth_epoch)
    ws = await connect(client, dataclasses.replace(user, access_token=token))
    started = time.monotonic()
    assert await ws.closed(6) == 4001
    assert time.monotonic() - started < 4.5


@pytest.fixture
async def small_queue_client(platform: Platform) -> AsyncIterator[Client]:
    """A gateway app whose sockets may have only 8 messages waiting."""
    tight = dataclasses.replace(platform, settings=dataclasses.replace(platform.settings, ws_send_queue=8))
    async with TestClient(TestServer(build_app(tight))) as test_client:
        yield test_client


async def test_a_client_that_never_reads_is_disconnected_and_others_are_not(
        small_queue_client: Client, client: Client, platform: Platform) -> None:
    owner, renter, room = await _room(client, platform)
    channel = f"chat:{room['id']}"
    reader = await connect(small_queue_client, owner)
    await reader.subscribe(channel)
    stalled = await _raw_socket_that_never_reads(small_queue_client, renter, channel)
    hub = small_queue_client.app[HUB]
    for _ in range(50):
        if len(hub.connections) == 2:
            break
        await asyncio.sleep(0.05)
    # Loopback TCP buffers megabytes before the sender notices (a 64 KiB MSS); a real network
    # path to a stalled phone does not. Shrink the server side of the stalled socket's buffer.
    (server_side,) = [c for c in hub.connections if str(c.claims.user_id) == renter.user_id]
    assert server_side.transport is not None
    server_side.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    before = WS_SLOW_CONSUMER_CLOSES._value.get()
    text = "Длинное сообщение. " * 200  # ~7 KB of UTF-8 each
    for i in range(60):
        resp = await client.post(f"/api/v1/chats/{room['id']}/messages", headers=owner.auth,
                                 json={"client_msg_id": f"m{i}", "text": text})
        assert resp.status == 201
        if WS_SLOW_CONSUMER_CLOSES._value.get() > before:
            break
    assert WS_SLOW_CONSUMER_CLOSES._value.get() == before + 1
    for _ in range(50):
        if len(hub.connections) == 1:
            break
        await asyncio.sleep(0.05)
    assert len(hub.connections) == 1  # only the reader is left
    sent = i + 1
    seqs = [(await reader.until("event", event="message_sent"))["data"]["message"]["seq"] for _ in range(sent)]
    assert seqs == list(range(1, sent + 1))
    stalled.close()
    await reader.close()


async def _raw_socket_that_never_reads(client: Client, who: LoggedIn, channel: str) -> socket.socket:
    """A websocket client by hand, with a tiny receive buffer, that subscribes and then never
    reads again (aiohttp's client always reads into memory)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, (client.host, client.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws HTTP/1.1\r\nHost: {client.host}:{client.port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {who.access_token}\r\n\r\n")
    await loop.sock_sendall(raw, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += await loop.sock_recv(raw, 1)
    assert response.startswith(b"HTTP/1.1 101"), response
    await loop.sock_sendall(raw, _masked_text_frame(orjson.dumps({"type": "subscribe", "channel": channel})))
    return raw


def _masked_text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_stopping_gateway_closes_its_sockets_with_1001(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    own = TestClient(TestServer(build_app(platform)))
    await own.start_server()
    ws = await connect(own, user)
    await ws.subscribe("user:me")
    hub = own.app[HUB]
    started = time.monotonic()
    closing = asyncio.create_task(own.server.close())  # the server only: the client stays
    assert await ws.closed(10) == 1001
    await closing
    assert time.monotonic() - started < 5
    assert not hub.connections and not hub.channels
    await own.close()


# --------------------------------------------------------------------------- bad input


async def test_bad_frames_are_answered_with_errors_and_the_socket_survives(client: Client) -> None:
    user = await register_and_login(client)
    ws = await connect(client, user)
    await ws.ws.send("{not json")
    await ws.expect("error", code="invalid_message")
    await ws.ws.send("[1, 2, 3]")
    await ws.expect("error", code="invalid_message")
    await ws.send(type="shout", id="s")
    await ws.expect("error", code="invalid_message", id="s")
    await ws.send(type="subscribe", channel="user:me", since="yesterday", id="v")
    error = await ws.expect("error", code="validation_failed", id="v")
    assert error["errors"][0]["path"] == "/since"
    await ws.ws.send(b'{"type": "ping"}')
    await ws.expect("error", code="invalid_message")
    await ws.ws.send(orjson.dumps({"type": "ping", "pad": "x" * 100_000}).decode())  # > 64 KiB
    await ws.expect("error", code="message_too_large")
    await ws.send(type="ping", id="still")
    await ws.expect("pong", id="still")
    # A frame far over the limit is refused by the frame parser: the socket closes with 1009.
    await ws.ws.send("x" * 1_000_000)
    assert await ws.closed() == 1009
    again = await connect(client, user)  # the server is fine
    await again.send(type="ping")
    await again.expect("pong")
    await again.close()


async def test_a_flood_is_rate_limited_then_disconnected(client: Client) -> None:
    user = await register_and_login(client)
    ws = await connect(client, user)
    # 30 over the burst: refused even if sending them takes a second (the bucket refills 20/s),
    # yet not enough refusals to count as abuse.
    for i in range(BURST + 30):
        await ws.send(type="ping", id=str(i))
    answers = [await ws.next() for _ in range(BURST + 30)]
    assert sum(a["type"] == "pong" for a in answers) >= BURST
    limited = [a for a in answers if a["type"] == "error"]
    assert limited and all(a["code"] == "rate_limited" for a in limited)
    for i in range(200):
        try:
            await ws.send(type="ping", id=str(i))
        except ConnectionClosed:
            break
    assert await ws.closed() == 4029


# -------------------------------------------------------------------------------- chats


async def test_chat_over_the_socket_send_read_typing_and_presence(client: Client, platform: Platform) -> None:
    owner, renter, room = await _room(client, platform)
    channel = f"chat:{room['id']}"
    renter_ws = await connect(client, renter)
    await renter_ws.subscribe(channel)
    states = {m["user_id"]: m["online"] for m in [await renter_ws.expect("presence") for _ in range(2)]}
    assert states == {owner.user_id: False, renter.user_id: True}
    owner_ws = await connect(client, owner)
    assert (await renter_ws.expect("presence", user_id=owner.user_id))["online"] is True
    await owner_ws.subscribe(channel)
    await owner_ws.expect("presence")
    await owner_ws.expect("presence")

    await renter_ws.send(type="send", channel=channel, client_msg_id="hello-1", text="Здравствуйте!", id="s1")
    # The reply and the room's event both come, in either order (the event may overtake).
    got = sorted([await renter_ws.next(), await renter_ws.next()], key=lambda m: str(m["type"]))
    assert [m["type"] for m in got] == ["event", "reply"] and got[1]["id"] == "s1"
    message = got[1]["data"]
    assert (message["seq"], message["body"], message["sender_id"]) == (1, "Здравствуйте!", renter.user_id)
    assert got[0]["event"] == "message_sent" and got[0]["data"]["message"] == message
    event = await owner_ws.expect("event", event="message_sent", channel=channel)
    assert event["data"]["message"] == message
    # A retried send is the same message, stored once.
    await renter_ws.send(type="send", channel=channel, client_msg_id="hello-1", text="Здравствуйте!", id="s2")
    assert (await renter_ws.expect("reply", id="s2"))["data"]["seq"] == 1
    assert await owner_ws.quiet(0.5) == []

    await owner_ws.send(type="typing", channel=channel)
    typing = await renter_ws.expect("typing", channel=channel)
    assert typing["user_id"] == owner.user_id
    await owner_ws.send(type="typing", channel=channel)  # within 2 s: dropped
    assert await renter_ws.quiet(0.5) == []
    assert await owner_ws.quiet(0.1) == []  # typists do not hear themselves

    await owner_ws.send(type="read", channel=channel, up_to=1, id="r")
    marker = await owner_ws.until("reply", id="r")
    assert marker["data"]["read_seq"] == 1 and marker["data"]["unread"] == 0
    read = await renter_ws.until("event", event="read")
    assert read["data"]["user_id"] == owner.user_id and read["data"]["read_seq"] == 1

    stranger = await connect(client, await register_and_login(client))
    await stranger.send(type="send", channel=channel, client_msg_id="x", text="spam", id="x")
    await stranger.expect("error", code="not_found", id="x")
    await stranger.close()

    await owner_ws.close()
    assert (await renter_ws.until("presence", user_id=owner.user_id))["online"] is False
    await renter_ws.close()


# -------------------------------------------------------------------------- REST fallback


async def test_the_rest_fallback_replays_like_the_socket(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    rental = await _book(client, renter, listing["id"], 60)
    await client.patch(f"/api/v1/listings/{listing['id']}", headers=owner.auth, json={"title": "Новое название"})
    url = f"/api/v1/channels/listing:{listing['id']}/events"
    head = await (await client.get(url, headers=owner.auth)).json()
    assert head["events"] == [] and head["complete"] is True and head["seq"] >= 3
    owner_view = await (await client.get(url, params={"since": "0"}, headers=owner.auth)).json()
    assert [e["seq"] for e in owner_view["events"]] == list(range(1, head["seq"] + 1))
    assert owner_view["channel"] == f"listing:{listing['id']}" and owner_view["epoch"] == head["epoch"]
    public_view = await (await client.get(url, params={"since": "0"}, headers=renter.auth)).json()
    public_events = {e["event"] for e in public_view["events"]}
    assert "availability_changed" in public_events and "revision_submitted" not in public_events
    assert all("rental_id" not in e["data"] for e in public_view["events"])
    stale = await (await client.get(url, params={"since": "0", "epoch": "nope"}, headers=owner.auth)).json()
    assert stale["complete"] is False and stale["events"] == []
    rental_url = f"/api/v1/channels/rental:{rental['id']}/events"
    assert (await client.get(rental_url, headers=renter.auth)).status == 200
    stranger = await register_and_login(client)
    assert (await client.get(rental_url, headers=stranger.auth)).status == 404
    assert (await client.get("/api/v1/channels/user:me/events", headers=stranger.auth)).status == 200
    assert (await client.get("/api/v1/channels/order:1/events", headers=stranger.auth)).status == 422
    assert (await client.get(url, params={"since": "-1"}, headers=owner.auth)).status == 422
    assert (await client.get(url)).status == 401


# ------------------------------------------------------------------------------- framing


async def test_a_lagging_client_gets_several_messages_per_frame(client: Client, platform: Platform) -> None:
    owner, listing = await published_listing(client, platform)
    for offset in range(70, 76):
        await _block(client, owner, listing["id"], offset)
    ws = await connect(client, owner)
    await ws.send(type="subscribe", channel=f"listing:{listing['id']}", since=0)
    subscribed = await ws.expect("subscribed")
    replayed = [await ws.expect("event") for _ in range(subscribed["seq"])]
    assert [e["seq"] for e in replayed] == list(range(1, subscribed["seq"] + 1))
    assert ws.frames < 1 + len(replayed)  # queued together, sent together
    await ws.close()

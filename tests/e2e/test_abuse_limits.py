"""Abuse limits over the real gateway: sockets per user (across gateway processes), websocket
commands in the user's API budget, atomic login and password-change limits under a parallel
burst, failed authentications in the address's budget, /readyz cached and limited without
Redis, and argon2 on its own bounded pool. The websocket client is `websockets`.

Every app here with low limits trusts X-Forwarded-For and speaks from an address of its own:
the session's other tests all come from 127.0.0.1, and the budgets are shared in Redis."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gateway.app import build_app
from sharehub.platform import Platform
from sharehub.security.passwords import hashing_pool
from tests.helpers import STRONG_PASSWORD, LoggedIn, register_and_login, unique_email

Client = TestClient[Any, Any]


def _address() -> str:
    return f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


@asynccontextmanager
async def _app(platform: Platform, **settings: Any) -> AsyncIterator[Client]:
    plat = replace(platform, settings=replace(platform.settings, trust_forwarded_for=True, **settings))
    async with TestClient(TestServer(build_app(plat))) as client:
        yield client


async def _problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    assert resp.content_type == "application/problem+json"
    assert body["code"] == code, body
    return body


class Socket:
    """A `websockets` client that splits coalesced frames ("\\n"-separated) into messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: deque[dict[str, Any]] = deque()

    async def ask(self, **message: Any) -> dict[str, Any]:
        """Send one message and return the answer that echoes its id (skipping anything else)."""
        message.setdefault("id", uuid.uuid4().hex[:12])
        await self.ws.send(orjson.dumps(message).decode())
        while True:
            while not self.pending:
                frame = await asyncio.wait_for(self.ws.recv(), 10)
                self.pending.extend(orjson.loads(line) for line in str(frame).split("\n"))
            answer = self.pending.popleft()
            if answer.get("id") == message["id"]:
                return answer


def _ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1).rstrip("/") + "/ws"


@asynccontextmanager
async def _socket(base: str, who: LoggedIn, address: str | None = None) -> AsyncIterator[Socket]:
    headers = {"X-Forwarded-For": address} if address else None
    async with connect(_ws_url(base), subprotocols=["bearer", who.access_token],  # type: ignore[list-item]
                       additional_headers=headers, proxy=None, open_timeout=10) as ws:
        assert ws.subprotocol == "bearer"
        yield Socket(ws)


async def _open(base: str, who: LoggedIn) -> ClientConnection | InvalidStatus:
    try:
        return await connect(_ws_url(base), subprotocols=["bearer", who.access_token],  # type: ignore[list-item]
                             proxy=None, open_timeout=10)
    except InvalidStatus as refused:
        return refused


async def _eventually(condition: Callable[[], Awaitable[bool]], secs: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + secs
    while not await condition():
        assert loop.time() < deadline, "never happened"
        await asyncio.sleep(0.05)


def _base(client: Client) -> str:
    return str(client.make_url("/"))


# ------------------------------------------------------------------------------ sockets per user


async def test_a_socket_over_the_cap_is_a_429_before_the_upgrade_and_closing_frees_a_slot(
        client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    key = f"presence:{user.user_id}"
    async with _app(platform, ws_sockets_per_user=2) as app:
        base = _base(app)
        first, second = await _open(base, user), await _open(base, user)
        assert isinstance(first, ClientConnection) and isinstance(second, ClientConnection)
        refused = await _open(base, user)
        assert isinstance(refused, InvalidStatus)
        response = refused.response
        assert response.status_code == 429
        assert response.headers["Content-Type"].startswith("application/problem+json")
        problem = orjson.loads(response.body or b"{}")
        assert problem["code"] == "too_many_sockets"
        assert int(response.headers["Retry-After"]) == problem["retry_after"] > 0
        assert await platform.redis.zcard(key) == 2  # the refused socket left no entry

        await first.close()

        async def one_left() -> bool:
            return bool(await platform.redis.zcard(key) == 1)

        await _eventually(one_left)
        third = await _open(base, user)
        assert isinstance(third, ClientConnection)
        await second.close()
        await third.close()


async def test_the_cap_holds_across_gateway_processes_under_a_burst(
        client: Client, platform: Platform, live_gateway: str, second_gateway: str) -> None:
    """Both processes run with the default cap (20): a burst of 30 handshakes split between
    them opens exactly 20 sockets."""
    user = await register_and_login(client)
    cap = 20
    outcomes = await asyncio.gather(*(_open(live_gateway if i % 2 else second_gateway, user) for i in range(30)))
    opened = [o for o in outcomes if isinstance(o, ClientConnection)]
    refused = [o for o in outcomes if isinstance(o, InvalidStatus)]
    try:
        assert len(opened) == cap, [getattr(o, "response", o) for o in outcomes]
        assert len(refused) == 30 - cap
        assert all(r.response.status_code == 429 and orjson.loads(r.response.body or b"{}")["code"]
                   == "too_many_sockets" for r in refused)
        assert await platform.redis.zcard(f"presence:{user.user_id}") == cap
    finally:
        await asyncio.gather(*(ws.close() for ws in opened))

    async def all_freed() -> bool:
        return bool(await platform.redis.zcard(f"presence:{user.user_id}") == 0)

    await _eventually(all_freed)
    again = await _open(second_gateway, user)
    assert isinstance(again, ClientConnection)
    await again.close()


# ------------------------------------------------------------------------ the user's API budget


async def test_socket_commands_spend_the_same_budget_as_rest(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    address = _address()
    async with _app(platform, api_requests_per_minute=5) as app, _socket(_base(app), user, address) as ws:
        assert (await ws.ask(type="subscribe", channel="user:me"))["type"] == "subscribed"  # 1
        assert (await ws.ask(type="unsubscribe", channel="user:me"))["type"] == "unsubscribed"  # 2
        for _ in range(10):  # pings are not commands: they spend nothing
            assert (await ws.ask(type="ping"))["type"] == "pong"
        for _ in range(3):  # 3, 4, 5 - over REST, the same budget
            assert (await app.get("/api/v1/users/me", headers=user.auth)).status == 200
        refused = await ws.ask(type="subscribe", channel="user:me")
        assert refused["type"] == "error" and refused["code"] == "rate_limited"
        assert (await ws.ask(type="ping"))["type"] == "pong"  # the socket stays open
        await _problem(await app.get("/api/v1/users/me", headers=user.auth), 429, "rate_limited")


async def test_a_command_while_redis_is_down_is_answered_redis_unavailable(
        client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    plat = replace(platform, settings=replace(platform.settings, trust_forwarded_for=True))
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        async with TestClient(TestServer(build_app(plat))) as app, _socket(_base(app), user, _address()) as ws:
            plat.redis = dead  # Redis goes away while the socket is open
            try:
                answer = await ws.ask(type="subscribe", channel="user:me")
                assert answer["type"] == "error" and answer["code"] == "redis_unavailable", answer
                assert (await ws.ask(type="ping"))["type"] == "pong"
            finally:
                plat.redis = platform.redis
            assert (await ws.ask(type="subscribe", channel="user:me"))["type"] == "subscribed"
    finally:
        await dead.aclose()


async def test_failed_authentications_spend_the_address_budget(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    address = {"X-Forwarded-For": _address()}
    guess = {**address, "Authorization": "Bearer not-a-token"}
    async with _app(platform, api_requests_per_minute=5) as app:
        statuses = [(await app.get("/api/v1/users/me", headers=guess)).status for _ in range(5)]
        assert statuses == [401] * 5
        resp = await app.get("/api/v1/users/me", headers=guess)
        body = await _problem(resp, 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) == body["retry_after"] > 0
        # Spent for anonymous requests from there too, but not for a user with a valid token.
        await _problem(await app.get(f"/api/v1/users/{uuid.uuid4()}", headers=address), 429, "rate_limited")
        assert (await app.get("/api/v1/users/me", headers={**address, **user.auth})).status == 200


# --------------------------------------------------------------------------- login and password


@pytest.mark.parametrize("window", ["account", "address"])
async def test_a_parallel_burst_of_wrong_logins_gets_exactly_the_limit_verified(
        client: Client, platform: Platform, window: str) -> None:
    """A 401 is an attempt that reached password verification; a 429 one that did not. The
    burst is far larger than the limit and sent at once, so with a read-then-write count every
    request would have seen room."""
    limit, burst = 3, 16
    if window == "account":  # one account, a new address for every attempt
        user = await register_and_login(client)
        settings = {"login_failures_per_account_per_hour": limit}
        attempts = [(user.email, _address()) for _ in range(burst)]
    else:  # one address, a new (unknown) account for every attempt
        settings = {"login_failures_per_ip_per_hour": limit}
        address = _address()
        attempts = [(unique_email(), address) for _ in range(burst)]
    async with _app(platform, **settings) as app:
        responses = await asyncio.gather(*(
            app.post("/api/v1/auth/login", json={"email": email, "password": "wrong-guess-42"},
                     headers={"X-Forwarded-For": ip}) for email, ip in attempts))
        statuses = sorted(resp.status for resp in responses)
        assert statuses == [401] * limit + [429] * (burst - limit)
        for resp in responses:
            if resp.status == 429:
                assert 0 < int(resp.headers["Retry-After"]) <= 3600


async def test_successful_logins_give_their_slot_back(client: Client, platform: Platform) -> None:
    users = [await register_and_login(client) for _ in range(4)]
    address = {"X-Forwarded-For": _address()}
    async with _app(platform, login_failures_per_ip_per_hour=2) as app:
        for user in users:  # more than the limit, from one address: none is a failure
            resp = await app.post("/api/v1/auth/login", json={"email": user.email, "password": user.password},
                                  headers=address)
            assert resp.status == 200, await resp.text()
        for _ in range(2):
            resp = await app.post("/api/v1/auth/login", json={"email": users[0].email, "password": "nope-nope-1"},
                                  headers=address)
            assert resp.status == 401
        resp = await app.post("/api/v1/auth/login", json={"email": users[1].email, "password": users[1].password},
                              headers=address)
        await _problem(resp, 429, "rate_limited")


async def _change(app: Client, user: LoggedIn, current: str, new: str = "Зимой на Байкал 2027!") -> Any:
    return await app.post("/api/v1/users/me/password", headers=user.auth,
                          json={"current_password": current, "new_password": new})


async def test_wrong_current_passwords_are_limited_per_user_atomically(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    async with _app(platform, password_change_failures_per_hour=3) as app:
        responses = await asyncio.gather(*(_change(app, user, f"guess-{i}-guess") for i in range(12)))
        assert sorted(r.status for r in responses) == [403] * 3 + [429] * 9
        refused = await _change(app, user, STRONG_PASSWORD)  # even the right one, while the window is full
        body = await _problem(refused, 429, "rate_limited")
        assert 0 < int(refused.headers["Retry-After"]) == body["retry_after"] <= 3600
        other = await register_and_login(client)  # per user: someone else is not limited
        assert (await _change(app, other, "wrong-wrong-1")).status == 403


async def test_a_right_current_password_does_not_spend_a_slot(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    async with _app(platform, password_change_failures_per_hour=2) as app:
        assert (await _change(app, user, "wrong-wrong-1")).status == 403
        changed = await _change(app, user, STRONG_PASSWORD)
        assert changed.status == 200, await changed.text()
        user = replace(user, access_token=(await changed.json())["access_token"], password="Зимой на Байкал 2027!")
        assert (await _change(app, user, "wrong-wrong-2")).status == 403
        await _problem(await _change(app, user, "wrong-wrong-3"), 429, "rate_limited")


# ---------------------------------------------------------------------------------------- readyz


async def test_readyz_runs_one_check_for_a_burst_of_callers(platform: Platform) -> None:
    async with _app(platform) as app:
        before = REGISTRY.get_sample_value("readiness_checks_total") or 0.0
        responses = await asyncio.gather(*(app.get("/readyz", headers={"X-Forwarded-For": _address()})
                                           for _ in range(20)))
        assert [r.status for r in responses] == [200] * 20
        bodies = [await r.json() for r in responses]
        assert all(body == bodies[0] for body in bodies)  # one check's answer, shared
        assert REGISTRY.get_sample_value("readiness_checks_total") == before + 1


async def test_readyz_is_limited_per_address_in_the_process_even_with_redis_down(platform: Platform) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    plat = replace(platform, redis=dead,
                   settings=replace(platform.settings, trust_forwarded_for=True, readyz_per_ip_per_minute=3))
    try:
        async with TestClient(TestServer(build_app(plat))) as app:
            prober = {"X-Forwarded-For": _address()}
            for _ in range(3):
                resp = await app.get("/readyz", headers=prober)
                assert resp.status == 503
                assert (await resp.json())["checks"]["redis"]["ok"] is False
            resp = await app.get("/readyz", headers=prober)
            body = await _problem(resp, 429, "rate_limited")
            assert int(resp.headers["Retry-After"]) == body["retry_after"] > 0
            assert (await app.get("/readyz", headers={"X-Forwarded-For": _address()})).status == 503
            assert (await app.get("/healthz", headers=prober)).status == 200  # never limited
    finally:
        await dead.aclose()


# ------------------------------------------------------------------------------------ argon2 pool


async def test_logins_wait_on_their_own_pool_which_answers_503_when_full(client: Client, platform: Platform) -> None:
    user = await register_and_login(client)
    settings = replace(platform.settings, password_hash_workers=1, password_hash_queue=0)
    pool = hashing_pool(settings)  # the app below hashes on this pool: the same settings, the same process
    release = threading.Event()
    hogging = asyncio.ensure_future(pool.run(release.wait, 60))
    try:
        async with _app(platform, password_hash_workers=1, password_hash_queue=0) as app:
            login = {"email": user.email, "password": user.password}
            busy = await app.post("/api/v1/auth/login", json=login, headers={"X-Forwarded-For": _address()})
            await _problem(busy, 503, "auth_busy")
            assert int(busy.headers["Retry-After"]) >= 1
            release.set()
            await hogging
            ok = await app.post("/api/v1/auth/login", json=login, headers={"X-Forwarded-For": _address()})
            assert ok.status == 200, await ok.text()
    finally:
        release.set()


async def test_a_full_default_executor_does_not_hold_up_logins(client: Client) -> None:
    """Every thread of the loop's default executor blocked (and more work queued behind them):
    a login still completes, because argon2 does not run there."""
    user = await register_and_login(client)
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blocked = [loop.run_in_executor(None, release.wait, 60) for _ in range(64)]
    try:
        async with asyncio.timeout(30):
            resp = await client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
        assert resp.status == 200, await resp.text()
    finally:
        release.set()
        await asyncio.gather(*blocked)

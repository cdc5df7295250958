"""Every cell of the authorization matrix (tests/authorization.py), over HTTP against the session's
app: for each operation, each caller - anonymous, user, owner, moderator, admin - and each relation
to the object it names (its own; a rental or chat it takes part in as renter or lender; someone
else's), a *valid* request, answered exactly as the matrix says: 2xx (101 for the websocket), 401,
403, 404 or the product's own refusal.

One world of objects serves the module: a caller of each role; a moderator who approves the
world's listings; `alice`, whose listings, rentals and chats are "someone else's"; and renters
who rent from everyone. Reads and calls that leave their object as it was share objects; a call
that uses its object up (archiving, answering a request, ending a login ...) gets an object of its
own in every cell that may make it, so each allowed call meets its object in the state it needs."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from actors.periods import local_day, now_utc
from gateway.app import ROUTE_TABLES
from sharehub import password_reset
from sharehub.mailer import send_due
from sharehub.platform import Platform
from tests.authorization import ALLOWED, TOKEN_ROLES, Kind, Outcome, Relation, Role, Rule, expected, matrix, routes
from tests.helpers import (
    DRILL,
    STRONG_PASSWORD,
    LoggedIn,
    login,
    make_user_with_roles,
    register_and_login,
    unique_email,
)

# Search answers from a replica and similar listings and price advice from ml-core: for real, not 503.
pytestmark = pytest.mark.usefixtures("search_replica", "ml_serving")

Client = TestClient[Any, Any]
# The world's rentals are for these days from today: never started while the module runs (the
# renter's caps count rentals that have not started; the extension asks for two more days).
RENTAL_START, RENTAL_END, EXTENDED_END = 40, 41, 43
NEW_PASSWORD = "Зимой в Казани 2027!"

# Calls that use their object up when allowed (it leaves the state the call needs): each allowed
# cell gets an object of its own. Every other call leaves its object as it found it, so all
# cells share objects (an allowed PATCH changes a price; a second handover re-issues the code).
CONSUMING = {
    ("DELETE", "/api/v1/listings/{listing_id}"), ("POST", "/api/v1/listings/{listing_id}/archive"),
    ("POST", "/api/v1/listings/{listing_id}/submit"), ("POST", "/api/v1/listings/{listing_id}/pause"),
    ("POST", "/api/v1/listings/{listing_id}/resume"),
    ("POST", "/api/v1/moderation/listings/{listing_id}/approve"),
    ("POST", "/api/v1/moderation/listings/{listing_id}/reject"),
    *(("POST", f"/api/v1/rentals/{{rental_id}}/{step}")
      for step in ("accept", "decline", "cancel", "confirm-handover", "return", "complete", "extend")),
    ("DELETE", "/api/v1/auth/sessions/{session_id}"), ("PUT", "/api/v1/admin/users/{user_id}/roles"),
    ("PUT", "/api/v1/admin/users/{user_id}/status"), ("POST", "/api/v1/admin/timers/{timer_id}/retry"),
}
# A fleet no shard host runs: a timer the matrix re-arms there is never fired.
MATRIX_FLEET = "authorization-matrix"


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


@dataclass
class Target:
    """What a cell's request names: the object's id and what a valid request about it needs."""

    id: str = ""
    listing_id: str = ""
    code: str = ""  # a rental's handover code, once issued


@dataclass
class Call:
    method: str
    url: str
    json: Any = None
    params: dict[str, str] | None = None
    # Who calls, when not the cell's caller itself (a login of its own, to end it); None: anonymous.
    as_: LoggedIn | None = None
    socket: bool = False


@dataclass
class Cell:
    rule: Rule
    role: Role
    relation: Relation
    caller: LoggedIn | None
    target: Target


@dataclass
class World:
    client: Client
    platform: Platform
    mail_dir: Path
    approver: LoggedIn
    alice: LoggedIn
    callers: dict[Role, LoggedIn]
    shops: dict[str, str] = field(default_factory=dict)  # lender's user id -> a listing for many rentals
    objects: dict[tuple[Any, ...], Target] = field(default_factory=dict)
    renters: list[LoggedIn] = field(default_factory=list)
    rented: set[tuple[str, str]] = field(default_factory=set)  # (renter, listing)
    rentals_by: Counter[str] = field(default_factory=Counter)

    # ------------------------------------------------------------------ people

    async def ok(self, method: str, url: str, who: LoggedIn, json: Any = None) -> dict[str, Any]:
        resp = await self.client.request(method, url, json=json, headers=who.auth)
        assert resp.status < 300, (method, url, resp.status, await resp.text())
        body: dict[str, Any] = await resp.json() if resp.status != 204 else {}
        return body

    async def throwaway(self, role: Role) -> LoggedIn:
        """A new account whose token carries the roles of `role` (for calls that end its logins)."""
        extra = set(TOKEN_ROLES[role]) - {"user"}
        if not extra:
            return await register_and_login(self.client)
        return await make_user_with_roles(self.client, self.platform, extra)

    async def second_login(self, who: LoggedIn) -> LoggedIn:
        return await login(self.client, who.email, who.password, who.user_id)

    async def renter_for(self, listing_id: str) -> LoggedIn:
        """Someone who has not rented this listing and holds few rentals (the renter caps: 2 on
        one listing, 10 in all, that have not started)."""
        for renter in self.renters:
            if (renter.user_id, listing_id) not in self.rented and self.rentals_by[renter.user_id] < 8:
                return renter
        self.renters.append(await register_and_login(self.client, name="Арендатор"))
        return self.renters[-1]

    # ------------------------------------------------------------------ listings

    async def listing(self, owner: LoggedIn, state: str) -> str:
        """A listing of `owner` in `state`, with units enough for every rental of the module."""
        created = await self.ok("POST", "/api/v1/listings", owner, {**DRILL, "quantity": 100})
        listing_id = str(created["id"])
        if state != "draft":
            await self.ok("POST", f"/api/v1/listings/{listing_id}/submit", owner)
        if state in ("published", "paused"):
            await self.ok("POST", f"/api/v1/moderation/listings/{listing_id}/approve", self.approver)
        if state == "paused":
            await self.ok("POST", f"/api/v1/listings/{listing_id}/pause", owner)
        return listing_id

    async def shop(self, lender: LoggedIn) -> str:
        if lender.user_id not in self.shops:
            self.shops[lender.user_id] = await self.listing(lender, "published")
        return self.shops[lender.user_id]

    async def alices(self, key: Any) -> str:
        """One of alice's published listings: one per key, so that a caller renting from alice
        for several purposes never holds more than one rental of a listing."""
        found = self.objects.get(("alices", key))
        if found is None:
            found = self.objects["alices", key] = Target(await self.listing(self.alice, "published"))
        return found.id

    # ------------------------------------------------------------------ rentals and chats

    async def rental(self, listing_id: str, lender: LoggedIn, renter: LoggedIn, state: str) -> Target:
        """A rental of `listing_id` by `renter`, walked to `state` by its parties."""
        self.rented.add((renter.user_id, listing_id))
        self.rentals_by[renter.user_id] += 1
        made = await self.ok("POST", "/api/v1/rentals", renter, {
            "listing_id": listing_id, "start": _day(RENTAL_START), "end": _day(RENTAL_END)})
        rental = Target(str(made["id"]), listing_id)
        url = f"/api/v1/rentals/{rental.id}"
        if state == "requested":
            return rental
        await self.ok("POST", f"{url}/accept", lender)
        if state == "accepted":
            return rental
        rental.code = str((await self.ok("POST", f"{url}/handover", lender))["handover_code"])
        if state == "handover_issued":
            return rental
        await self.ok("POST", f"{url}/confirm-handover", renter, {"code": rental.code})
        if state == "extension_requested":
            await self.ok("POST", f"{url}/extend", renter, {"end": _day(EXTENDED_END)})
        elif state == "returned":
            await self.ok("POST", f"{url}/return", lender)
        else:
            assert state == "active", state
        return rental

    async def room(self, listing_id: str, renter: LoggedIn) -> Target:
        """The room of `renter` about `listing_id`, with the renter's first message in it."""
        room = await self.ok("POST", "/api/v1/chats", renter, {"listing_id": listing_id})
        await self.ok("POST", f"/api/v1/chats/{room['id']}/messages", renter,
                      {"client_msg_id": "first", "text": "Здравствуйте! Свободно на выходных?"})
        return Target(str(room["id"]), listing_id)

    # ------------------------------------------------------------------ the other kinds

    async def session(self, who: LoggedIn) -> Target:
        """Another login of `who` (ending it leaves the world's token working)."""
        again = await self.second_login(who)
        return Target(str(self.platform.tokens.verify_access(again.access_token).session_id))

    async def notification(self, who: LoggedIn) -> Target:
        """One of `who`'s notifications: a message from alice in a room of theirs (or to alice,
        from a renter) makes one; the notifications consumer stores it."""
        if who is self.alice:
            await self.room(await self.alices("chat"), await register_and_login(self.client))
        else:
            room = await self.room(await self.alices("chat"), who)
            await self.ok("POST", f"/api/v1/chats/{room.id}/messages", self.alice,
                          {"client_msg_id": f"reply-{uuid.uuid4()}", "text": "Да, свободно."})
        deadline = time.monotonic() + 30
        while True:
            items = (await self.ok("GET", "/api/v1/notifications", who))["items"]
            if items:
                return Target(str(items[0]["id"]))
            assert time.monotonic() < deadline, f"no notification for {who.email}"
            await asyncio.sleep(0.2)

    async def dead_timer(self) -> Target:
        """A timer that failed for good, in a fleet no host runs (so re-arming it fires nothing).
        Timers fail only inside shard hosts; the route under test only reads and re-arms rows."""
        command_id = uuid.uuid4()
        await self.platform.db.execute(
            """INSERT INTO entity_timers (fleet, logical_shard, entity_kind, entity_id, name, fire_at, command_id,
                                          state, attempts, dead_at, last_failed_at, last_error_code)
               VALUES ($1, 0, 'counter', $2, 'explode', now(), $3, 'dead', 5, now(), now(), 'bug')""",
            MATRIX_FLEET, str(command_id), command_id)
        return Target(str(command_id))

    async def target(self, kind: Kind, state: str, relation: Relation, role: Role, key: str) -> Target:
        """The object a cell names, made once per (what it is, whose it is, key)."""
        caller = self.callers.get(role)
        whose = "" if relation == "other" else role
        cache = (kind, state, relation, whose, key)
        if cache in self.objects:
            return self.objects[cache]
        made = await self._make(kind, state, relation, caller, key)
        self.objects[cache] = made
        return made

    async def _make(self, kind: Kind, state: str, relation: Relation, caller: LoggedIn | None,  # noqa: PLR0911
                    key: str) -> Target:
        mine = relation in ("own", "renter", "lender")
        assert caller is not None or not mine
        if kind == "":
            return Target()
        if kind == "listing":
            return Target(await self.listing(caller if mine and caller else self.alice, state))
        if kind == "rental":
            if relation == "lender" and caller:
                shop = await self.shop(caller)
                return await self.rental(shop, caller, await self.renter_for(shop), state)
            listing_id = await self.alices((key, state))
            renter = caller if relation == "renter" and caller else await self.renter_for(listing_id)
            return await self.rental(listing_id, self.alice, renter, state)
        if kind == "chat":
            if relation == "lender" and caller:
                shop = await self.shop(caller)
                return await self.room(shop, await self.renter_for(shop))
            listing_id = await self.alices("chat")
            return await self.room(listing_id, caller if relation == "renter" and caller else
                                   await self.renter_for(listing_id))
        if kind == "session":
            return await self.session(caller if mine and caller else self.alice)
        if kind == "account":
            if mine and caller:
                return Target(caller.user_id)
            # Someone else: alice, unless the call may change the account (then one of its own).
            return Target((await register_and_login(self.client) if key != "shared" else self.alice).user_id)
        if kind == "notification":
            return await self.notification(caller if mine and caller else self.alice)
        assert kind == "timer", kind
        return await self.dead_timer()

    # ------------------------------------------------------------------ one cell

    async def run(self, rule: Rule, role: Role, relation: Relation, outcome: Outcome) -> tuple[int, str]:
        if rule.operation not in CONSUMING:
            key = "shared"
        elif outcome == ALLOWED:
            key = f"{rule.name}|{role}|{relation}"  # its own object
        else:
            key = f"{rule.name}|refused"  # refused calls leave their object as it was
        target = await self.target(rule.kind, rule.state, relation, role, key)
        caller = self.callers.get(role)
        call = await REQUESTS[rule.operation](self, Cell(rule, role, relation, caller, target))
        return await self.send(call, call.as_ if call.as_ is not None else caller)

    async def send(self, call: Call, who: LoggedIn | None) -> tuple[int, str]:
        headers = who.auth if who is not None else {}
        if call.socket:
            try:
                socket = await self.client.ws_connect(call.url, headers=headers)
            except aiohttp.WSServerHandshakeError as refused:
                return refused.status, refused.message
            await socket.close()
            return 101, ""
        resp = await self.client.request(call.method, call.url, json=call.json, params=call.params, headers=headers)
        return resp.status, (await resp.text())[:300]


async def _owner(client: Client, platform: Platform, approver: LoggedIn) -> tuple[LoggedIn, str]:
    """A user whose first listing was approved - an `owner` - logged in again so that the token
    says so; and that listing."""
    user = await register_and_login(client)
    resp = await client.post("/api/v1/listings", json={**DRILL, "quantity": 100}, headers=user.auth)
    listing_id = (await resp.json())["id"]
    assert (await client.post(f"/api/v1/listings/{listing_id}/submit", headers=user.auth)).status == 200
    approved = await client.post(f"/api/v1/moderation/listings/{listing_id}/approve", headers=approver.auth)
    assert approved.status == 200, await approved.text()
    owner = await login(client, user.email, user.password, user.user_id)
    assert "owner" in platform.tokens.verify_access(owner.access_token).roles
    return owner, listing_id


@pytest.fixture(scope="module")
async def world(client: Client, platform: Platform, mail_dir: Path, event_pipeline: None) -> AsyncIterator[World]:
    approver = await make_user_with_roles(client, platform, {"moderator"})
    alice, alice_shop = await _owner(client, platform, approver)
    owner, owner_shop = await _owner(client, platform, approver)
    callers: dict[Role, LoggedIn] = {
        "user": await register_and_login(client),
        "owner": owner,
        "moderator": await make_user_with_roles(client, platform, {"moderator"}),
        "admin": await make_user_with_roles(client, platform, {"admin"}),
    }
    world = World(client, platform, mail_dir, approver, alice, callers,
                  shops={alice.user_id: alice_shop, owner.user_id: owner_shop})
    yield world


# ---------------------------------------------------------------------- the request of each operation

Build = Callable[[World, Cell], Awaitable[Call]]
REQUESTS: dict[tuple[str, str], Build] = {}


def request(method: str, path: str) -> Callable[[Build], Build]:
    def register(build: Build) -> Build:
        REQUESTS[method, path] = build
        return build

    return register


def _plain(method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> None:
    """An operation whose request is the same for every cell, but for the object's id."""

    async def build(_: World, cell: Cell) -> Call:
        url = re.sub(r"\{[a-z_]+\}", cell.target.id, path)
        return Call(method, url, json=json() if callable(json) else json, params=params)

    REQUESTS[method, path] = build


for _path in ("/healthz", "/readyz", "/metrics", "/api/openapi.yaml", "/docs", "/.well-known/jwks.json",
              "/api/v1/categories", "/api/v1/auth/sessions", "/api/v1/users/me", "/api/v1/users/me/listings",
              "/api/v1/moderation/listings", "/api/v1/rentals", "/api/v1/chats", "/api/v1/notifications",
              "/api/v1/admin/timers", "/api/v1/users/{user_id}", "/api/v1/admin/users/{user_id}"):
    _plain("GET", _path)
_plain("GET", "/api/v1/search", params={"q": "перфоратор", "city": "Москва"})
_plain("GET", "/api/v1/search/suggest", params={"q": "перф"})
_plain("POST", "/api/v1/auth/register",
       json=lambda: {"email": unique_email("matrix"), "password": STRONG_PASSWORD, "display_name": "Новичок"})
_plain("POST", "/api/v1/auth/password-reset", json=lambda: {"email": unique_email("forgot")})
_plain("PATCH", "/api/v1/users/me", json={"bio": "Сдаю инструмент по выходным."})
_plain("POST", "/api/v1/admin/users",
       json=lambda: {"email": unique_email("made"), "password": STRONG_PASSWORD, "display_name": "Сотрудник"})
_plain("DELETE", "/api/v1/auth/sessions/{session_id}")
_plain("PUT", "/api/v1/admin/users/{user_id}/roles", json={"roles": ["user", "moderator"]})
_plain("PUT", "/api/v1/admin/users/{user_id}/status", json={"status": "banned"})
_plain("POST", "/api/v1/admin/timers/{timer_id}/retry")
_plain("POST", "/api/v1/listings", json=DRILL)
_plain("POST", "/api/v1/pricing/suggest", json=lambda: {
    "category_id": "power-tools", "city": "Москва", "title": "Перфоратор Makita", "rental_unit": "day",
    "start": _day(20), "end": _day(22)})
_plain("POST", "/api/v1/notifications/read-all")
_plain("POST", "/api/v1/notifications/{notification_id}/read")
_L = "/api/v1/listings/{listing_id}"
for _method, _path in (("GET", _L), ("DELETE", _L), ("GET", f"{_L}/similar"), ("POST", f"{_L}/submit"),
                       ("POST", f"{_L}/pause"), ("POST", f"{_L}/resume"), ("POST", f"{_L}/archive"),
                       ("POST", "/api/v1/moderation/listings/{listing_id}/approve")):
    _plain(_method, _path)
_plain("PATCH", _L, json={"price_per_unit": 72000})
_plain("PUT", f"{_L}/blocked-periods", json=lambda: {"periods": [{"start": _day(200), "end": _day(201)}]})
_plain("GET", f"{_L}/availability", params={"from": _day(30), "to": _day(36)})
_plain("GET", f"{_L}/price-suggestion", params={"from": _day(20), "to": _day(22)})
_plain("POST", "/api/v1/moderation/listings/{listing_id}/reject", json={"reason": "Фото не соответствует описанию."})
_R = "/api/v1/rentals/{rental_id}"
for _path in (_R,):
    _plain("GET", _path)
for _step in ("accept", "decline", "cancel", "handover", "return", "complete"):
    _plain("POST", f"{_R}/{_step}")
_C = "/api/v1/chats/{chat_id}"
_plain("GET", _C)
_plain("GET", f"{_C}/messages")
_plain("POST", f"{_C}/messages",
       json=lambda: {"client_msg_id": str(uuid.uuid4()), "text": "Можно забрать в субботу утром?"})
_plain("POST", f"{_C}/read", json={"up_to": 1})
_plain("POST", f"{_C}/typing")


@request("POST", "/api/v1/auth/login")
async def _login(world: World, _: Cell) -> Call:
    return Call("POST", "/api/v1/auth/login", json={"email": world.alice.email, "password": world.alice.password})


@request("POST", "/api/v1/auth/refresh")
async def _refresh(world: World, _: Cell) -> Call:
    pair = await world.second_login(world.alice)
    return Call("POST", "/api/v1/auth/refresh", json={"refresh_token": pair.refresh_token})


@request("POST", "/api/v1/auth/password-reset/confirm")
async def _confirm_reset(world: World, _: Cell) -> Call:
    forgetful = await register_and_login(world.client)
    return Call("POST", "/api/v1/auth/password-reset/confirm",
                json={"token": await _reset_token(world, forgetful.email), "new_password": NEW_PASSWORD})


@request("POST", "/api/v1/auth/logout")
async def _logout(world: World, cell: Cell) -> Call:
    # A login of its own: the world's token of this caller keeps working.
    return Call("POST", "/api/v1/auth/logout", as_=await world.second_login(cell.caller) if cell.caller else None)


@request("POST", "/api/v1/users/me/password")
async def _change_password(world: World, cell: Cell) -> Call:
    # Changing the password ends the account's other logins: an account of its own, same roles.
    who = await world.throwaway(cell.role) if cell.caller else None
    return Call("POST", "/api/v1/users/me/password", as_=who,
                json={"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD})


@request("POST", "/api/v1/rentals")
async def _rent(_: World, cell: Cell) -> Call:
    return Call("POST", "/api/v1/rentals",
                json={"listing_id": cell.target.id, "start": _day(RENTAL_START), "end": _day(RENTAL_END)})


@request("POST", f"{_R}/confirm-handover")
async def _confirm_handover(_: World, cell: Cell) -> Call:
    # Everyone sends the right code: a refusal is about who asks, not about the code.
    return Call("POST", f"/api/v1/rentals/{cell.target.id}/confirm-handover", json={"code": cell.target.code})


@request("POST", f"{_R}/extend")
async def _extend(_: World, cell: Cell) -> Call:
    # The lender answers the waiting extension; everyone else sends what a renter would.
    body = {"decision": "accept"} if cell.relation == "lender" else {"end": _day(EXTENDED_END + 2)}
    return Call("POST", f"/api/v1/rentals/{cell.target.id}/extend", json=body)


@request("GET", "/api/v1/channels/{channel}/events")
async def _channel(_: World, cell: Cell) -> Call:
    channel = f"rental:{cell.target.id}" if cell.rule.kind == "rental" else "user:me"
    return Call("GET", f"/api/v1/channels/{channel}/events", params={"since": "0"})


@request("POST", "/api/v1/chats")
async def _open_chat(_: World, cell: Cell) -> Call:
    return Call("POST", "/api/v1/chats", json={"listing_id": cell.target.id})


@request("GET", "/ws")
async def _socket(_: World, __: Cell) -> Call:
    return Call("GET", "/ws", socket=True)


async def _reset_token(world: World, address: str) -> str:
    """The token of a reset e-mail, as its reader gets it (the database keeps only its hash)."""
    await password_reset.request_reset(world.platform, email=address, ip="127.0.0.1")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await password_reset.process_requests(world.platform)
        await send_due(world.platform)
        for path in sorted(world.mail_dir.glob("*.eml")) if world.mail_dir.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if not isinstance(message, email.message.EmailMessage) or message["To"] != address:
                continue
            body = message.get_body(preferencelist=("plain",))
            found = re.search(r"reset-password\?token=([A-Za-z0-9_\-%]+)", body.get_content() if body else "")
            assert found, address
            return found.group(1)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no reset e-mail to {address}")


# ---------------------------------------------------------------------- the test

SERVED = routes(ROUTE_TABLES)
RULES_SERVED = [rule for rule, _ in matrix(ROUTE_TABLES)]


def _answers(outcome: Outcome, status: int, *, socket: bool) -> bool:
    if outcome == ALLOWED:
        return status == 101 if socket else 200 <= status < 300
    return status == int(outcome)


def test_every_operation_has_a_request() -> None:
    assert {rule.operation for rule in RULES_SERVED} <= set(REQUESTS), set(SERVED) - set(REQUESTS)


@pytest.mark.parametrize("rule", RULES_SERVED, ids=[rule.name for rule in RULES_SERVED])
async def test_each_caller_gets_what_the_matrix_says(world: World, rule: Rule) -> None:
    wrong = []
    for (role, relation), outcome in expected(SERVED[rule.operation].access, rule).items():
        status, body = await world.run(rule, role, relation, outcome)
        if not _answers(outcome, status, socket=rule.path == "/ws"):
            wrong.append(f"  {role} as {relation}: expected {outcome}, got {status} {body}")
    assert not wrong, f"{rule.name} - {rule.why}\n" + "\n".join(wrong)

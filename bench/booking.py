"""Booking through the HTTP API and the listing entity actors, against a plain Postgres transaction.

Both paths are real HTTP servers in their own processes, driven by the same aiohttp client with
the same request bodies and the same users' access tokens, on the same Postgres (same tables, same
`bookings_no_overlap` constraint), in the same run, alternating over several rounds:

- **product**: a `sharehub gateway` process (all middlewares, `POST /api/v1/rentals`), which sends
  `request_booking` to the listing's entity in the Ray shard actors (micro-batched, decided in
  memory, one group commit per batch of rentals + bookings + transitions + outbox + command ids);
- **baseline**: a minimal aiohttp server (this file, `--serve-baseline`) whose handler verifies the
  JWT and checks revocation in Redis exactly as the gateway does, validates the same body model,
  then books in one plain transaction per request: `SELECT ... FROM listings ... FOR UPDATE`, the
  units busy over the period from `bookings`, the same rules and the same quote
  (actors/quotes.quote), `INSERT` rental + bookings + transition + 2 outbox events, commit;
  201 with the same rental view, or 409.

What differs, on purpose or not: the baseline skips the gateway's other middlewares (request id,
metrics, the rate limit counter in Redis, CORS, security headers) and the reads the rentals route
does around the command (the renter's held rentals before it - a count in Postgres and an in-flight
counter in Redis -; the rental and its history after it, for the response - the baseline answers
from memory); it writes no `processed_commands` row,
does not update the listing row, and waits for a free Redis connection where the platform's client
would fail the request (see `serve_baseline`). Neither server writes an access log (the gateway runs
at WARNING). The gateway's outbox relay publishes both paths' events to NATS; every run starts with
an empty outbox. Each path has its own listings (an actor keeps its listing's calendar in memory, so
no one may write its bookings behind its back).

Workloads (each a closed loop: `concurrency` clients, each sending its next request when the last
is answered; client i is renter i):
- **hot**: one listing rented by the hour, quantity 50, instant book; random 1-3 hour windows over
  the next year (most succeed; a conflict is a window where all 50 are taken);
- **uniform**: 10 000 published instant-book listings (3/4 by the day, 1/4 by the hour), each request
  for a random listing and random dates. A warm-up first sends every listing a request that both
  paths refuse (start in the past) after reading the listing, so entities are active, as they are
  in a running system, without giving either path bookings the other lacks.

After each run: no two bookings of one unit overlap (one query over all the path's bookings) and
the path's committed rentals grew by exactly the number of 201 answers. Postgres runs durable
(fsync + synchronous commit, as production must for acknowledged bookings); `--no-durable` turns
that off. "per commit" is bookings per Postgres transaction (the product's group commit; from the
shared transaction timestamp of `processed_commands` rows). The CPU lines say where the CPU went,
in ms per request, by process (client = this process; other = Ray's daemons, NATS, Redis).

    .venv/bin/python bench/booking.py [--rounds 3] [--hot-requests 2000] [--hot-concurrency 200]
        [--listings 10000] [--uniform-requests 2000] [--uniform-concurrency 32] [--users 200]
        [--gateway-pool 10] [--baseline-pool 20] [--processes 1] [--no-durable] [--no-warmup]
        [--only hot|uniform]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import psutil
import uvloop
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.periods import (
    LISTING_TIME_ZONE,
    UNIT_LENGTH,
    PeriodError,
    RentalPeriod,
    day_start,
    local_day,
    now_utc,
    overlaps,
)
from actors.quotes import PricingTerms, quote
from bench.common import RunResult, measure, revision, throwaway_stack
from gateway.bodies import read_body
from gateway.rental_schemas import RentalRequest
from gateway.rental_views import rental_view
from gateway.responses import json_response, problem_response
from sharehub.config import REPO_ROOT, load_settings
from sharehub.devstack import ServiceUrls
from sharehub.devstack.processes import free_port, spawn, stop
from sharehub.errors import ApiError, not_found, unauthorized
from sharehub.platform import Platform, open_platform
from sharehub.progress import Progress
from sharehub.revocation import check_not_revoked
from sharehub.security.keys import generate_key
from sharehub.security.passwords import hash_password
from sharehub.security.tokens import TokenInvalid
from storage.db import create_pool
from storage.listings import ENTITY_COLUMNS, cancellation_policies
from storage.migrate import migrate

PASSWORD = "Аренда без забот 2026"  # noqa: S105 - benchmark accounts on a throwaway database
PRODUCT, BASELINE = "product", "baseline"
RENTALS_PATH = "/api/v1/rentals"
HORIZON_HOURS = 364 * 24
_TOKEN_REFRESH_SECS = 600  # access tokens live 15 minutes
HERE = Path(__file__).resolve()
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


# ============================================================================ the baseline server


_RENTAL_FIELDS = ("id", "listing_id", "renter_id", "owner_id", "status", "rental_unit", "quantity", "start_at",
                  "end_at", "held_until", "unit_numbers", "quote", "total", "expires_at", "details", "version")
_TRANSITION_FIELDS = ("rental_id", "seq", "command", "from_status", "to_status", "actor_id", "actor_role", "data",
                      "at")


class BaselineBooking:
    """`POST /api/v1/rentals` as one plain Postgres transaction per request."""

    _LISTING = """SELECT owner_id, status, title, rental_unit, price_per_unit, deposit, discounts, price_overrides,
                         quantity, min_units, max_units, min_notice_hours, buffer_hours, instant_book,
                         cancellation_policy, blocked_periods
                  FROM listings WHERE id = $1 FOR UPDATE"""
    _BUSY = "SELECT DISTINCT unit_no FROM bookings WHERE listing_id = $1 AND period && tstzrange($2, $3)"
    _INSERT_RENTAL = """INSERT INTO rentals (id, listing_id, renter_id, owner_id, status, rental_unit, quantity,
                                             start_at, end_at, held_until, unit_numbers, quote, total, expires_at,
                                             details, version)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"""
    _INSERT_TRANSITION = """INSERT INTO rental_transitions (rental_id, seq, command, from_status, to_status, actor_id,
                                                            actor_role, data, at)
                            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"""
    _INSERT_BOOKINGS = """INSERT INTO bookings (rental_id, listing_id, unit_no, period)
                          SELECT $1, $2, unit, tstzrange($4, $5) FROM unnest($3::int[]) AS unit"""
    _INSERT_OUTBOX = """INSERT INTO outbox (id, subject, entity_kind, entity_id, event_type, payload)
                        VALUES ($1, $2, $3, $4, $5, $6)"""

    def __init__(self, platform: Platform, policies: dict[str, Any]) -> None:
        self.platform = platform
        self.policies = policies

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._book(request)
        except ApiError as error:
            return problem_response(error, request)

    async def _book(self, request: web.Request) -> web.Response:
        # Authentication exactly as the gateway's middleware: EdDSA JWT (cached after the first
        # check, as there), then the revocation/auth-epoch check in Redis.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        try:
            claims = self.platform.tokens.verify_access(token.strip())
            await check_not_revoked(self.platform, claims)
        except TokenInvalid as exc:
            raise unauthorized(exc.code, "The access token is not valid.") from exc
        body = await read_body(request, RentalRequest)
        renter = claims.user_id
        rental_id = uuid.uuid4()
        now = now_utc()
        async with self.platform.db.acquire() as conn, conn.transaction():
            listing = await conn.fetchrow(self._LISTING, body.listing_id)
            if listing is None:
                raise not_found("listing")
            period, quantity, held_until = self._check(listing, renter, body, now)
            busy = {row["unit_no"] for row in await conn.fetch(self._BUSY, body.listing_id, period.start, held_until)}
            free = [unit for unit in range(1, listing["quantity"] + 1) if unit not in busy]
            if len(free) < quantity or self._blocked(listing, period):
                raise ApiError(409, "dates_unavailable", "These dates are no longer available.")
            units = free[:quantity]
            rental, transition = self._rental(listing, listing_id=body.listing_id, rental_id=rental_id,
                                              renter=renter, period=period, quantity=quantity,
                                              held_until=held_until, units=units, now=now)
            await conn.execute(self._INSERT_RENTAL, *(rental[name] for name in _RENTAL_FIELDS))
            await conn.execute(self._INSERT_TRANSITION, *(transition[name] for name in _TRANSITION_FIELDS))
            await conn.execute(self._INSERT_BOOKINGS, rental_id, body.listing_id, units, period.start, held_until)
            await conn.executemany(self._INSERT_OUTBOX, _outbox_rows(rental, period, now))
        view = rental_view({**rental, "listing_title": listing["title"], "created_at": now,
                            "updated_at": now}, "renter", now=now, history=[transition])
        return json_response(view, status=201, headers={"Location": f"{RENTALS_PATH}/{rental_id}"})

    @staticmethod
    def _check(listing: asyncpg.Record, renter: uuid.UUID, body: RentalRequest, now: datetime
               ) -> tuple[RentalPeriod, int, datetime]:
        """The rules of actors/listing_rentals.request_booking, in the same order."""
        if listing["status"] not in ("published", "paused") and listing["owner_id"] != renter:
            raise not_found("listing")
        if listing["status"] != "published":
            raise ApiError(409, "listing_unavailable", "This listing is not taking bookings.")
        if listing["owner_id"] == renter:
            raise ApiError(409, "own_listing", "You cannot rent your own listing.")
        try:
            period = RentalPeriod.parse(listing["rental_unit"], body.start, body.end)
        except PeriodError as exc:
            raise ApiError(422, "invalid_period", str(exc)) from None
        if body.quantity > listing["quantity"]:
            raise ApiError(422, "quantity_too_large", f"This listing has {listing['quantity']} item(s).")
        if period.units < listing["min_units"]:
            raise ApiError(422, "duration_too_short", "Too short.")
        if listing["max_units"] is not None and period.units > listing["max_units"]:
            raise ApiError(422, "duration_too_long", "Too long.")
        if (period.unit == "day" and local_day(period.start) < local_day(now)) or (
                period.unit == "hour" and period.start < now):
            raise ApiError(422, "start_in_past", "The start has already passed.")
        if listing["min_notice_hours"] and period.start < now + timedelta(hours=listing["min_notice_hours"]):
            raise ApiError(422, "too_soon", "Not enough notice.")
        horizon = now + timedelta(days=365)
        if period.start > horizon or period.end > horizon + UNIT_LENGTH[period.unit]:
            raise ApiError(422, "too_far_ahead", "Bookings open at most a year ahead, start and end.")
        return period, body.quantity, period.end + timedelta(hours=listing["buffer_hours"])

    @staticmethod
    def _blocked(listing: asyncpg.Record, period: RentalPeriod) -> bool:
        for blocked in listing["blocked_periods"]:
            start = day_start(date.fromisoformat(blocked["start"]))
            end = day_start(date.fromisoformat(blocked["end"]) + timedelta(days=1))
            if overlaps(period.start, period.end, start, end):
                return True
        return False

    def _rental(self, listing: asyncpg.Record, *, listing_id: uuid.UUID, rental_id: uuid.UUID, renter: uuid.UUID,
                period: RentalPeriod, quantity: int, held_until: datetime, units: list[int], now: datetime
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        terms = PricingTerms(listing["price_per_unit"], listing["deposit"], listing["discounts"],
                             listing["price_overrides"])
        priced = quote(terms, period, quantity)
        priced["terms"] = {"price_per_unit": terms.price_per_unit, "deposit": terms.deposit,
                           "discounts": list(terms.discounts), "price_overrides": list(terms.price_overrides)}
        priced["cancellation_policy"] = listing["cancellation_policy"]
        priced["cancellation_tiers"] = self.policies[listing["cancellation_policy"]]
        status = "accepted" if listing["instant_book"] else "requested"
        details: dict[str, Any] = {"late_fee_per_unit": listing["price_per_unit"] * quantity,
                                   "requested_at": now.isoformat()}
        if status == "accepted":
            details["accepted_at"] = now.isoformat()
        # (A request that waits for the owner would also need its expiry timer; the benchmark's
        # listings are all instant book.)
        rental = {
            "id": rental_id, "listing_id": listing_id, "renter_id": renter, "owner_id": listing["owner_id"],
            "status": status, "rental_unit": period.unit, "quantity": quantity, "start_at": period.start,
            "end_at": period.end, "held_until": held_until, "unit_numbers": units, "quote": priced,
            "total": priced["total"], "expires_at": None, "details": details, "version": 1,
        }
        transition = {"rental_id": rental_id, "seq": 1, "command": "request", "from_status": None,
                      "to_status": status, "actor_id": renter, "actor_role": "renter",
                      "data": {"instant_book": listing["instant_book"]}, "at": now}
        return rental, transition


def _outbox_rows(rental: dict[str, Any], period: RentalPeriod, now: datetime) -> list[tuple[Any, ...]]:
    """The two events the listing entity emits for a booking, in the runtime's envelope."""
    rental_id, listing_id = str(rental["id"]), str(rental["listing_id"])
    events = [
        ("rental", rental_id, "state_changed", 1,
         {"from": None, "to": rental["status"], "by": "renter", "listing_id": listing_id, **period.wire(),
          "quantity": rental["quantity"], "total": rental["total"]}),
        ("listing", listing_id, "availability_changed", 0,
         {"change": "held", "rental_id": rental_id, "start": rental["start_at"].isoformat(),
          "until": rental["held_until"].isoformat(), "units": len(rental["unit_numbers"])}),
    ]
    rows = []
    for kind, entity_id, event_type, version, data in events:
        event_id = uuid.uuid4()
        payload = {"event_id": str(event_id), "type": event_type, "kind": kind, "entity_id": entity_id,
                   "version": version, "occurred_at": now.isoformat(), "data": data}
        rows.append((event_id, f"{kind}.{entity_id}.{event_type}", kind, entity_id, event_type, payload))
    return rows


async def serve_baseline(port: int, pool_size: int) -> None:
    settings = replace(load_settings(), db_pool_min=pool_size, db_pool_max=pool_size)
    async with open_platform(settings) as platform:
        # The platform's Redis client fails a command when its 100 connections are all busy
        # (redis-py's default pool); the baseline waits for a free one instead.
        await platform.redis.aclose()
        platform.redis = Redis(connection_pool=BlockingConnectionPool.from_url(
            settings.redis_url or "", max_connections=100, timeout=30, socket_timeout=5))
        policies = {p["code"]: p["tiers"] for p in await cancellation_policies(platform.db)}
        booking = BaselineBooking(platform, policies)
        app = web.Application(client_max_size=settings.max_body_bytes)
        app.router.add_post(RENTALS_PATH, booking.handle)

        async def ready(_: web.Request) -> web.Response:
            return json_response({"status": "ok"})

        app.router.add_get("/readyz", ready)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
        await stopping.wait()
        await runner.cleanup()
        await platform.redis.aclose()


# ============================================================================ setup


@dataclass
class Renter:
    email: str
    access: str = ""
    refresh: str = ""
    issued: float = 0.0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}", "Content-Type": "application/json"}


@dataclass
class PathData:
    owner: uuid.UUID
    hot: uuid.UUID | None = None
    uniform: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (listing id, rental unit)


async def _insert_users(conn: Conn, count: int) -> tuple[list[Renter], dict[str, uuid.UUID]]:
    password_hash = hash_password(PASSWORD)
    tag = uuid.uuid4().hex[:6]
    owners = {PRODUCT: uuid.uuid4(), BASELINE: uuid.uuid4()}
    rows = [(uid, f"owner-{path}-{tag}@bench.sharehub.local", f"Owner {path}", "Москва", password_hash)
            for path, uid in owners.items()]
    renters = [Renter(f"renter{i}-{tag}@bench.sharehub.local") for i in range(count)]
    rows += [(uuid.uuid4(), r.email, f"Renter {i}", "Москва", password_hash) for i, r in enumerate(renters)]
    await conn.copy_records_to_table("users", columns=["id", "email", "display_name", "city", "password_hash"],
                                     records=rows)
    await conn.execute("UPDATE users SET roles = array_append(roles, 'owner') WHERE id = ANY($1::uuid[])",
                       list(owners.values()))
    return renters, owners


def _listing(owner: uuid.UUID, index: int, *, unit: str, quantity: int, now: datetime) -> dict[str, Any]:
    hourly = unit == "hour"
    return {
        "id": uuid.uuid4(), "owner_id": owner, "status": "published",
        "title": f"{'Палатка' if hourly else 'Перфоратор Bosch'} #{index}",
        "description": "Для нагрузочного теста: мгновенное бронирование.", "photos": [],
        "category_id": "power-tools", "attributes": {}, "city": "Москва",
        "lat": 55.75 + (index % 100) / 1000, "lon": 37.61 + (index % 77) / 1000, "rental_unit": unit,
        "price_per_unit": (30_000 if hourly else 70_000) + 100 * (index % 50),
        "discounts": [{"min_units": 3, "percent": 10}, {"min_units": 7, "percent": 20}], "price_overrides": [],
        "deposit": 500_000, "quantity": quantity, "min_units": 1, "max_units": None, "min_notice_hours": 0,
        "buffer_hours": 0, "instant_book": True, "cancellation_policy": "moderate", "blocked_periods": [],
        "pending_revision": None, "rejection_reason": None, "published_at": now,
    }


async def _insert_listings(conn: Conn, rows: list[dict[str, Any]], progress: Progress) -> None:
    columns = [*ENTITY_COLUMNS, "created_at", "updated_at", "version"]
    for start in range(0, len(rows), 5000):
        chunk = rows[start:start + 5000]
        await conn.copy_records_to_table("listings", columns=columns, records=[
            (*[r[c] for c in ENTITY_COLUMNS], r["published_at"], r["published_at"], 1) for r in chunk])
        progress.advance(len(chunk))


async def prepare_data(pool: asyncpg.Pool, users: int, listings: int, hot_quantity: int
                       ) -> tuple[list[Renter], dict[str, PathData]]:
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        renters, owners = await _insert_users(conn, users)
        data = {path: PathData(owner) for path, owner in owners.items()}
        rows = []
        for path in (PRODUCT, BASELINE):
            hot = _listing(owners[path], 0, unit="hour", quantity=hot_quantity, now=now)
            data[path].hot = hot["id"]
            rows.append(hot)
            for index in range(1, listings + 1):
                unit = "hour" if index % 4 == 0 else "day"
                row = _listing(owners[path], index, unit=unit, quantity=2 if index % 10 == 0 else 1, now=now)
                data[path].uniform.append((row["id"], unit))
                rows.append(row)
        with Progress("listings", len(rows)) as progress:
            await _insert_listings(conn, rows, progress)
    return renters, data


async def log_in(session: aiohttp.ClientSession, base: str, renters: list[Renter]) -> None:
    """Real logins through the gateway (argon2), a few at a time."""
    gate = asyncio.Semaphore(4)

    async def one(renter: Renter, progress: Progress) -> None:
        async with gate, session.post(f"{base}/api/v1/auth/login",
                                      json={"email": renter.email, "password": PASSWORD}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        renter.access, renter.refresh, renter.issued = body["access_token"], body["refresh_token"], time.monotonic()
        progress.advance()

    with Progress("logins", len(renters)) as progress:
        await asyncio.gather(*(one(r, progress) for r in renters))


async def refresh_tokens(session: aiohttp.ClientSession, base: str, renters: list[Renter]) -> None:
    """Rotate tokens that are getting old (access tokens live 15 minutes)."""
    stale = [r for r in renters if time.monotonic() - r.issued > _TOKEN_REFRESH_SECS]
    gate = asyncio.Semaphore(8)

    async def one(renter: Renter) -> None:
        async with gate, session.post(f"{base}/api/v1/auth/refresh", json={"refresh_token": renter.refresh}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        renter.access, renter.refresh, renter.issued = body["access_token"], body["refresh_token"], time.monotonic()

    await asyncio.gather(*(one(r) for r in stale))


# ============================================================================ servers


@dataclass
class Server:
    name: str
    base: str
    procs: list[subprocess.Popen[bytes]]
    log: Path


def _server_env(urls: ServiceUrls, keys: Path, pool: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(urls.as_env())
    env.update({
        "SHAREHUB_JWT_KEYS_DIR": str(keys), "SHAREHUB_KEY_PUBLISH_DELAY_SECS": "0",
        # One client address sends everything: the per-client budget is not what is measured
        # (the gateway still counts every request in Redis).
        "SHAREHUB_API_REQUESTS_PER_MINUTE": "100000000", "SHAREHUB_LOGIN_FAILURES_PER_IP": "1000000",
        # Each client is one renter booking far more than a renter may hold: the caps on held
        # dates are not what is measured either (the gateway still counts them per request).
        "SHAREHUB_MAX_OPEN_RENTALS_PER_RENTER": "100000000", "SHAREHUB_MAX_OPEN_RENTALS_PER_LISTING": "100000000",
        "SHAREHUB_LOG_LEVEL": "WARNING", "SHAREHUB_DB_POOL_MAX": str(pool),
    })
    return env


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


_EXCEPTION = re.compile(r"([A-Za-z_][\w.]*(?:Error|Exception)): ([^\"\\\n]{0,100})")


def _logged_errors(log: Path, offset: int) -> Counter[str]:
    """The exceptions a server logged since `offset` (the last line of each traceback)."""
    with log.open("rb") as file:
        file.seek(offset)
        text = file.read().decode(errors="replace")
    errors: Counter[str] = Counter()
    for record in text.splitlines():
        found = _EXCEPTION.findall(record.replace("\\n", "\n"))  # JSON logs escape the traceback
        if found:
            errors[": ".join(found[-1])] += 1
    return errors


async def start_server(name: str, argv: list[str], *, port: int, env: dict[str, str], log: Path,
                       processes: int) -> Server:
    procs = [spawn(argv, log_path=log, env=env, cwd=REPO_ROOT) for _ in range(processes)]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    async with aiohttp.ClientSession() as session:
        while True:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{name} exited:\n{_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready:\n{_tail(log)}")
            await asyncio.sleep(0.3)
    return Server(name, base, procs, log)


# ============================================================================ load


@dataclass
class Outcome:
    timing: RunResult
    created: int
    conflicts: int
    errors: int
    elapsed: float
    cpu_ms: dict[str, float]  # CPU milliseconds per request, by process group
    overlaps: int = 0
    per_commit: float = 1.0  # bookings per Postgres commit

    @property
    def booked_per_sec(self) -> float:
        return self.created / self.elapsed


def _moment(at: datetime) -> str:
    return at.astimezone(LISTING_TIME_ZONE).isoformat()


def hot_bodies(listing: uuid.UUID, count: int, rng: random.Random) -> list[bytes]:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    bodies = []
    for _ in range(count):
        start = base + timedelta(hours=rng.randrange(3, HORIZON_HOURS))
        end = start + timedelta(hours=rng.randint(1, 3))
        bodies.append(orjson.dumps({"listing_id": str(listing), "start": _moment(start), "end": _moment(end),
                                    "quantity": 1}))
    return bodies


def uniform_bodies(listings: list[tuple[uuid.UUID, str]], picks: list[int], rng: random.Random) -> list[bytes]:
    today = local_day(now_utc())
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    bodies = []
    for index in picks:
        listing_id, unit = listings[index]
        if unit == "day":
            first = today + timedelta(days=rng.randrange(1, 360))
            start, end = first.isoformat(), (first + timedelta(days=rng.randint(1, 3) - 1)).isoformat()
        else:
            at = base + timedelta(hours=rng.randrange(3, HORIZON_HOURS))
            start, end = _moment(at), _moment(at + timedelta(hours=rng.randint(1, 3)))
        bodies.append(orjson.dumps({"listing_id": str(listing_id), "start": start, "end": end, "quantity": 1}))
    return bodies


def past_bodies(listings: list[tuple[uuid.UUID, str]]) -> list[bytes]:
    """A request per listing that starts in the past (refused after the listing is read)."""
    yesterday = local_day(now_utc()) - timedelta(days=1)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    order = list(range(len(listings)))
    random.Random(-2).shuffle(order)
    bodies = []
    for index in order:
        listing_id, unit = listings[index]
        start, end = ((yesterday.isoformat(), yesterday.isoformat()) if unit == "day"
                      else (_moment(hour), _moment(hour + timedelta(hours=1))))
        bodies.append(orjson.dumps({"listing_id": str(listing_id), "start": start, "end": end, "quantity": 1}))
    return bodies


class CpuMeter:
    """CPU time used by each group of processes between two snapshots."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def _pids(self, name: str) -> Iterator[psutil.Process]:
        for pid in self.groups[name]:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                yield proc
                if name == "postgres":  # the postmaster's backends come and go
                    yield from proc.children()

    def snapshot(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name in self.groups:
            total = 0.0
            for proc in self._pids(name):
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
                    if name == "postgres" and proc.pid in self.groups[name]:  # backends that have exited
                        total += times.children_user + times.children_system
            totals[name] = total
        return totals


async def drive(session: aiohttp.ClientSession, url: str, bodies: list[bytes], renters: list[Renter], *,
                concurrency: int, meter: CpuMeter, expected: frozenset[str] = frozenset()) -> Outcome:
    """Send every body (client i as renter i); a booking is 201 `accepted`, a conflict is 409
    `dates_unavailable`; any other answer is an error unless its "status code" is `expected`."""
    counts: Counter[str] = Counter()
    samples: list[tuple[int, bytes]] = []

    async def op(index: int) -> None:
        async with session.post(url, data=bodies[index], headers=renters[index % len(renters)].headers) as resp:
            payload = await resp.read()
            status = resp.status
        answer = orjson.loads(payload) if payload.startswith(b"{") else {}
        if status == 201 and answer.get("status") == "accepted":
            counts["created"] += 1
        elif status == 409 and answer.get("code") == "dates_unavailable":
            counts["conflicts"] += 1
        elif f"{status} {answer.get('code')}" in expected:
            counts["expected"] += 1
        else:
            counts["errors"] += 1
            if len(samples) < 3:
                samples.append((status, payload[:300]))

    before = meter.snapshot()
    started = time.perf_counter()
    timing = await measure(op, requests=len(bodies), concurrency=concurrency)
    elapsed = time.perf_counter() - started
    after = meter.snapshot()
    for status, payload in samples:
        print(f"    unexpected answer {status}: {payload.decode(errors='replace')}", file=sys.stderr)
    cpu = {name: (after[name] - before[name]) * 1000 / len(bodies) for name in before}
    return Outcome(timing, counts["created"], counts["conflicts"], counts["errors"], elapsed, cpu)


_OVERLAPS = """SELECT count(*) FROM bookings a JOIN bookings b
                 ON a.listing_id = b.listing_id AND a.unit_no = b.unit_no AND a.rental_id < b.rental_id
                AND a.period && b.period
               JOIN listings l ON l.id = a.listing_id
               WHERE l.owner_id = $1"""


async def committed(pool: asyncpg.Pool, owner: uuid.UUID) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM rentals WHERE owner_id = $1", owner))


async def wait_for_outbox(pool: asyncpg.Pool) -> None:
    """Let the relay publish everything so no run pays for the previous one's events."""
    deadline = time.monotonic() + 300
    while await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
        if time.monotonic() > deadline:
            raise TimeoutError("the outbox relay did not catch up")
        await asyncio.sleep(0.2)


# ============================================================================ the run


@dataclass(frozen=True)
class Options:
    rounds: int
    hot_requests: int
    hot_concurrency: int
    hot_quantity: int
    listings: int
    uniform_requests: int
    uniform_concurrency: int
    users: int
    gateway_pool: int
    baseline_pool: int
    processes: int
    durable: bool
    only: str | None
    warmup: bool


async def _shard_pids(shards: int) -> list[int]:
    import ray

    from actors.sharding import ShardMap
    from sharehub.devstack.ray_local import RAY_NAMESPACE

    pids = []
    for physical in range(shards):
        with contextlib.suppress(ValueError):
            actor = ray.get_actor(ShardMap(shards).actor_name(physical), namespace=RAY_NAMESPACE)
            pids.append(int((await actor.stats.remote())["pid"]))
    return pids


def _postmaster_pid(database_url: str) -> list[int]:
    port = database_url.rsplit(":", 1)[-1].split("/", 1)[0]
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-p" in cmdline and port in cmdline:
            return [proc.pid]
    return []


@dataclass
class Bench:
    """Everything a run needs, set up once."""

    opts: Options
    session: aiohttp.ClientSession
    servers: dict[str, Server]
    data: dict[str, PathData]
    renters: list[Renter]
    pool: asyncpg.Pool
    meter: CpuMeter = field(default_factory=lambda: CpuMeter({}))

    async def warm_up(self, workloads: list[str]) -> None:
        """200 hot bookings on each path (connections, prepared statements, the shard actors
        start); then, for the uniform workload, one request per listing for a start in the past:
        answered 422 by both paths after the listing is read (the product activates its entity),
        so no path gets bookings the other has not."""
        for path in (PRODUCT, BASELINE):
            url = self.servers[path].base + RENTALS_PATH
            bodies: list[bytes] = []
            hot = self.data[path].hot
            if "hot" in workloads and hot is not None:
                bodies += hot_bodies(hot, 200, random.Random(-1))
            if "uniform" in workloads and self.opts.warmup:
                bodies += past_bodies(self.data[path].uniform)
            with Progress(f"warm-up {path}", len(bodies)) as progress:
                for start in range(0, len(bodies), 500):
                    chunk = bodies[start:start + 500]
                    outcome = await drive(self.session, url, chunk, self.renters, concurrency=64, meter=CpuMeter({}),
                                          expected=frozenset({"422 start_in_past"}))
                    if outcome.errors:
                        raise RuntimeError(f"warm-up of {path}: {outcome.errors} unexpected answers")
                    progress.advance(len(chunk))
            await wait_for_outbox(self.pool)

    async def one_run(self, path: str, workload: str, seed: int) -> Outcome:
        server, data, rng = self.servers[path], self.data[path], random.Random(seed)
        if workload == "hot":
            assert data.hot is not None
            bodies, concurrency = hot_bodies(data.hot, self.opts.hot_requests, rng), self.opts.hot_concurrency
        else:
            picks = [rng.randrange(len(data.uniform)) for _ in range(self.opts.uniform_requests)]
            bodies, concurrency = uniform_bodies(data.uniform, picks, rng), self.opts.uniform_concurrency
        await refresh_tokens(self.session, self.servers[PRODUCT].base, self.renters)
        await wait_for_outbox(self.pool)
        rentals_before = await committed(self.pool, data.owner)
        since = await self.pool.fetchval("SELECT clock_timestamp()")
        log_offset = _log_size(server.log)
        outcome = await drive(self.session, server.base + RENTALS_PATH, bodies, self.renters,
                              concurrency=concurrency, meter=self.meter)
        stored = await committed(self.pool, data.owner) - rentals_before
        if stored != outcome.created:
            raise AssertionError(f"{server.name}: {outcome.created} bookings acknowledged but {stored} stored")
        outcome.overlaps = int(await self.pool.fetchval(_OVERLAPS, data.owner))
        if path == PRODUCT:
            # Commands of one group commit share their transaction's now().
            row = await self.pool.fetchrow(
                "SELECT count(*), count(DISTINCT created_at) FROM processed_commands WHERE created_at >= $1", since)
            assert row is not None
            outcome.per_commit = row[0] / max(row[1], 1)
        if any(p.poll() is not None for p in server.procs):
            raise RuntimeError(f"{server.name} died:\n{_tail(server.log)}")
        for error, count in _logged_errors(server.log, log_offset).most_common(3):
            print(f"    {server.name} logged {count} x {error}", file=sys.stderr)
        return outcome


async def run(opts: Options) -> None:
    results: dict[str, dict[str, list[Outcome]]] = {}
    with throwaway_stack(with_ray=True, durable=opts.durable) as urls, tempfile.TemporaryDirectory() as tmp:
        await migrate(urls.database_url, load_settings().migrations_dir)
        keys = Path(tmp) / "keys"
        generate_key(keys)
        pool = await create_pool(urls.database_url, max_size=4)
        print("preparing users and listings...", file=sys.stderr)
        renters, data = await prepare_data(pool, opts.users, opts.listings, opts.hot_quantity)
        gateway_port, baseline_port = free_port(), free_port()
        gateway_argv = [sys.executable, "-m", "sharehub", "gateway", "--port", str(gateway_port)]
        baseline_argv = [sys.executable, str(HERE), "--serve-baseline", str(baseline_port),
                         "--baseline-pool", str(opts.baseline_pool)]
        if opts.processes > 1:
            gateway_argv.append("--reuse-port")
        print("starting the gateway and the baseline server...", file=sys.stderr)
        servers = {
            PRODUCT: await start_server("gateway", gateway_argv, port=gateway_port,
                                        env=_server_env(urls, keys, opts.gateway_pool), log=Path(tmp) / "gateway.log",
                                        processes=opts.processes),
            BASELINE: await start_server("baseline", baseline_argv, port=baseline_port,
                                         env=_server_env(urls, keys, opts.baseline_pool),
                                         log=Path(tmp) / "baseline.log", processes=opts.processes),
        }
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=aiohttp.ClientTimeout(total=120)) as session:
                bench = Bench(opts, session, servers, data, renters, pool)
                await log_in(session, servers[PRODUCT].base, renters)
                workloads = [w for w in ("hot", "uniform") if opts.only in (None, w)]
                # The shard actors start with the first command: warm up before looking for them.
                await bench.warm_up(workloads)
                groups = {
                    "client": [os.getpid()],
                    "gateway": [p.pid for p in servers[PRODUCT].procs],
                    "shards": await _shard_pids(2),
                    "baseline": [p.pid for p in servers[BASELINE].procs],
                    "postgres": _postmaster_pid(urls.database_url),
                }
                known = {pid for pids in groups.values() for pid in pids}
                groups["other"] = [p.pid for p in psutil.Process().children(recursive=True)
                                   if p.pid not in known and p.name() != "postgres"]  # Ray, NATS, Redis
                print(f"  pids: {groups}", file=sys.stderr)
                bench.meter = CpuMeter(groups)
                for workload in workloads:
                    results[workload] = {PRODUCT: [], BASELINE: []}
                for round_no in range(opts.rounds):
                    for workload in workloads:
                        order = (PRODUCT, BASELINE) if round_no % 2 == 0 else (BASELINE, PRODUCT)
                        for path in order:
                            outcome = await bench.one_run(path, workload, seed=round_no * 100 + len(workload))
                            results[workload][path].append(outcome)
                            _report_run(round_no, opts.rounds, workload, path, outcome)
        finally:
            for server in servers.values():
                for proc in server.procs:
                    stop(proc)
            await pool.close()
    _print_tables(results, opts)


def _report_run(round_no: int, rounds: int, workload: str, path: str, o: Outcome) -> None:
    print(f"  round {round_no + 1}/{rounds} {workload:<7} {path:<8} {o.timing.ops_per_sec:7.0f} req/s "
          f"{o.booked_per_sec:7.0f} booked/s  p50 {o.timing.p50_ms:6.1f} ms  p99 {o.timing.p99_ms:6.1f} ms  "
          f"201: {o.created}  409: {o.conflicts}  other: {o.errors}  overlaps: {o.overlaps}  "
          f"per commit: {o.per_commit:.1f}", file=sys.stderr)


def _median(outcomes: list[Outcome], value: Any) -> float:
    return float(statistics.median(value(o) for o in outcomes))


def _print_tables(results: dict[str, dict[str, list[Outcome]]], opts: Options) -> None:
    print(f"\nShareHub {revision()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    titles = {
        "hot": f"(a) one hot listing, quantity {opts.hot_quantity}, by the hour: {opts.hot_requests} requests, "
               f"{opts.hot_concurrency} concurrent clients",
        "uniform": f"(b) {opts.listings} listings, uniform: {opts.uniform_requests} requests, "
                   f"{opts.uniform_concurrency} concurrent clients",
    }
    names = {PRODUCT: "HTTP gateway -> shard actors", BASELINE: "baseline: SELECT ... FOR UPDATE"}
    summary: dict[str, dict[str, float]] = {}
    durability = "durable Postgres" if opts.durable else "Postgres without fsync"
    for workload, by_path in results.items():
        print(f"\n{titles[workload]}; medians of {opts.rounds} rounds, {durability}")
        print(f"{'path':<33} {'req/s':>7} {'booked/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'201':>6} {'409':>5} "
              f"{'other':>5} {'overlaps':>8} {'per commit':>10} {'vs base':>8}")
        base_rate = _median(by_path[BASELINE], lambda o: o.booked_per_sec)
        for path, outcomes in by_path.items():
            rate = _median(outcomes, lambda o: o.booked_per_sec)
            row = {
                "rate": rate, "p99": _median(outcomes, lambda o: o.timing.p99_ms),
                "overlaps": float(sum(o.overlaps for o in outcomes)), "ratio": rate / base_rate,
            }
            summary[f"{workload}/{path}"] = row
            print(f"{names[path]:<33} {_median(outcomes, lambda o: o.timing.ops_per_sec):>7.0f} {rate:>9.0f} "
                  f"{_median(outcomes, lambda o: o.timing.p50_ms):>7.1f} {row['p99']:>7.1f} "
                  f"{_median(outcomes, lambda o: o.created):>6.0f} {_median(outcomes, lambda o: o.conflicts):>5.0f} "
                  f"{_median(outcomes, lambda o: o.errors):>5.0f} {row['overlaps']:>8.0f} "
                  f"{_median(outcomes, lambda o: o.per_commit):>10.1f} {row['ratio']:>7.2f}x")
        groups = list(next(iter(by_path.values()))[0].cpu_ms)
        print(f"  CPU ms per request: {'':<12}" + "".join(f"{name:>9}" for name in [*groups, "total"]))
        for path, outcomes in by_path.items():
            cpu = [_median(outcomes, lambda o, n=name: o.cpu_ms[n]) for name in groups]
            print(f"  {path:<32}" + "".join(f"{ms:>9.2f}" for ms in [*cpu, sum(cpu)]))
    _print_targets(summary)


def _print_targets(summary: dict[str, dict[str, float]]) -> None:
    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\nTargets (from the tracker):")
    overlaps = sum(row["overlaps"] for row in summary.values())
    print(f"  zero overlaps in both paths: {overlaps:.0f} overlapping pairs - {mark(overlaps == 0)}")
    if "hot/product" in summary:
        ratio = summary["hot/product"]["ratio"]
        print(f"  hot listing >= 3x the baseline: {ratio:.2f}x - {mark(ratio >= 3)}")
    if "uniform/product" in summary:
        row = summary["uniform/product"]
        ok = row["rate"] >= 1000 and row["p99"] <= 50 and row["ratio"] >= 1
        print(f"  uniform >= 1000 booked/s, p99 <= 50 ms, not below the baseline: {row['rate']:.0f}/s, "
              f"p99 {row['p99']:.1f} ms, {row['ratio']:.2f}x - {mark(ok)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hot-requests", type=int, default=2000)
    parser.add_argument("--hot-concurrency", type=int, default=200)
    parser.add_argument("--hot-quantity", type=int, default=50)
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--uniform-requests", type=int, default=2000)
    parser.add_argument("--uniform-concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=200, help="renters (one per client)")
    parser.add_argument("--gateway-pool", type=int, default=10, help="the gateway's Postgres pool (product default)")
    parser.add_argument("--baseline-pool", type=int, default=20, help="the baseline server's Postgres pool")
    parser.add_argument("--processes", type=int, default=1, help="gateway (and baseline) processes sharing a port")
    parser.add_argument("--no-durable", dest="durable", action="store_false", help="Postgres without fsync")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip activating every uniform listing before measuring")
    parser.add_argument("--only", choices=["hot", "uniform"])
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        uvloop.run(serve_baseline(args.serve_baseline, args.baseline_pool))
        return
    opts = Options(args.rounds, args.hot_requests, args.hot_concurrency, args.hot_quantity, args.listings,
                   args.uniform_requests, args.uniform_concurrency, args.users, args.gateway_pool,
                   args.baseline_pool, args.processes, args.durable, args.only, args.warmup)
    uvloop.run(run(opts))


if __name__ == "__main__":
    main()

"""An outage is answered as an outage - the experiment, for Postgres, NATS and Redis.

A gateway process of its own (its own Postgres, NATS and Redis, its own shard actor fleet on the
session's Ray) takes booking load from concurrent clients, each retrying its booking with the same
Idempotency-Key until it gets an answer that settles it. Mid-load one server is stopped (Postgres
as `pg_ctl stop -m immediate` does: SIGQUIT, crash recovery on the next start) and started again
on the same port. Then:
- no request got a 500 (or any 5xx but a 503), during the outage or after it;
- every 503 named the dependency (`database_unavailable`, `redis_unavailable`) and carried
  Retry-After, and came at once rather than after a pool or command timeout;
- `/readyz` failed while the server was down;
- not one acknowledged booking is lost, and none is stored twice: the renters' rentals in Postgres
  are exactly the acknowledged ones, and (for NATS) every one of their events left the outbox;
- service came back by itself; the time it took is printed (the target is 2 s).
Timings are printed, and asserted only against bounds far from the target (a hang is 10 s)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import ray

from actors.periods import local_day, now_utc
from actors.sharding import ShardMap
from sharehub import accounts
from sharehub.config import RAY_NAMESPACE, Settings
from sharehub.devstack.nats import EmbeddedNats
from sharehub.devstack.postgres import EmbeddedPostgres
from sharehub.devstack.redis import EmbeddedRedis
from sharehub.platform import open_platform
from storage.db import create_pool
from storage.migrate import migrate
from tests.e2e.conftest import gateway_process
from tests.helpers import DRILL, STRONG_PASSWORD, unique_email

CLIENTS = 12
LISTINGS = 12
WARMUP_SECS = 1.5
OUTAGE_SECS = 3.0
# Service must run clean this long after the restart before the load stops.
CLEAN_RUN_SECS = 1.5
# Bounds far from the targets (a 503 at once, service back within 2 s): only a hang fails them.
MAX_503_LATENCY_SECS = 3.0
MAX_RECOVERY_SECS = 10.0


@dataclass
class Stack:
    postgres: EmbeddedPostgres
    nats: EmbeddedNats
    redis: EmbeddedRedis
    settings: Settings
    base: str
    renters: list[dict[str, str]] = field(default_factory=list)  # user id and bearer header
    listings: list[str] = field(default_factory=list)


@dataclass
class Answer:
    sent: float
    latency: float
    status: int
    code: str | None
    retry_after: str | None


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> rental id

    def failures_after(self, since: float) -> list[Answer]:
        return [a for a in self.answers if a.sent >= since and a.status != 201 and a.code != "dates_unavailable"]


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


@pytest.fixture(scope="module")
async def stack(migrated: Settings, tmp_root: Path) -> AsyncIterator[Stack]:
    root = tmp_root / f"outage-{secrets.token_hex(3)}"
    postgres = EmbeddedPostgres(root / "postgres", durable=False)
    nats_server = EmbeddedNats(root / "nats", durable=False)
    redis_server = EmbeddedRedis(root / "redis", durable=False)
    fleet = f"outage-{secrets.token_hex(3)}"
    try:
        settings = replace(migrated, database_url=postgres.start(), nats_url=nats_server.start(),
                           redis_url=redis_server.start(), fleet=fleet, shard_count=1)
        assert settings.database_url
        await migrate(settings.database_url, settings.migrations_dir)
        env = {"SHAREHUB_FLEET": fleet, "SHAREHUB_SHARDS": "1", "SHAREHUB_MAX_OPEN_RENTALS_PER_RENTER": "100000",
               "SHAREHUB_MAX_OPEN_RENTALS_PER_LISTING": "100000", "SHAREHUB_LOG_LEVEL": "ERROR"}
        with gateway_process(settings, root / "gateway.log", env) as base:
            built = Stack(postgres, nats_server, redis_server, settings, base)
            await _populate(built)
            yield built
    finally:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(ShardMap(1, fleet=fleet).actor_name(0), namespace=RAY_NAMESPACE))
        for server in (redis_server, nats_server, postgres):
            server.stop()


async def _populate(stack: Stack) -> None:
    """Renters, and instant-book listings with room for every booking the load makes."""
    async with open_platform(replace(stack.settings, ray_address=None)) as platform:
        email = unique_email("outage-mod")
        await accounts.create_user(platform, email=email, password=STRONG_PASSWORD, display_name="Модератор",
                                   roles=frozenset({"moderator"}))
    async with aiohttp.ClientSession(stack.base) as http:
        moderator = await _login(http, email)
        owner = await _register(http)
        stack.renters = [await _register(http) for _ in range(4)]
        for i in range(LISTINGS):
            resp = await http.post("/api/v1/listings", headers=owner, json={
                **DRILL, "title": f"Перфоратор {i}", "instant_book": True, "quantity": 50})
            listing_id = (await resp.json())["id"]
            assert (await http.post(f"/api/v1/listings/{listing_id}/submit", headers=owner)).status == 200
            resp = await http.post(f"/api/v1/moderation/listings/{listing_id}/approve", headers=moderator)
            assert resp.status == 200, await resp.text()
            stack.listings.append(listing_id)


async def _register(http: aiohttp.ClientSession) -> dict[str, str]:
    email = unique_email("outage")
    resp = await http.post("/api/v1/auth/register",
                           json={"email": email, "password": STRONG_PASSWORD, "display_name": "Арендатор"})
    assert resp.status == 201, await resp.text()
    return {**await _login(http, email), "id": (await resp.json())["id"]}


async def _login(http: aiohttp.ClientSession, email: str) -> dict[str, str]:
    resp = await http.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def _client(http: aiohttp.ClientSession, stack: Stack, load: Load, stop: asyncio.Event, seed: int) -> None:
    """Book, retrying each booking with its key until it settles (201, or its dates were taken)."""
    rng = random.Random(seed)
    while not stop.is_set():
        renter = rng.choice(stack.renters)
        headers = {"Authorization": renter["Authorization"], "Idempotency-Key": str(uuid.uuid4())}
        day = _day(rng.randrange(5, 360))
        body = {"listing_id": rng.choice(stack.listings), "start": day, "end": day}
        settled_by = time.monotonic() + 30
        while time.monotonic() < settled_by:
            sent = time.monotonic()
            async with http.post("/api/v1/rentals", json=body, headers=headers) as resp:
                payload: dict[str, Any] = await resp.json(content_type=None)
                load.answers.append(Answer(sent, time.monotonic() - sent, resp.status, payload.get("code"),
                                           resp.headers.get("Retry-After")))
            if resp.status == 201:
                load.acknowledged[headers["Idempotency-Key"]] = payload["id"]
                break
            if resp.status == 409 and payload.get("code") == "dates_unavailable":
                break
            # 503 (the outage) or 409 idempotency_request_in_progress (a try cut off by it): again,
            # sooner than Retry-After asks, to see the moment service returns.
            await asyncio.sleep(0.05)


async def _readyz(http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    async with http.get("/readyz") as resp:
        return resp.status, await resp.json()


@dataclass
class Outcome:
    load: Load
    down_at: float
    up_at: float
    readyz_during: list[tuple[int, dict[str, Any]]]

    @property
    def recovery_secs(self) -> float:
        """From the server accepting connections again to the end of the last failed answer."""
        failed = self.load.failures_after(self.up_at)
        return max((a.sent + a.latency for a in failed), default=self.up_at) - self.up_at

    def report(self, name: str) -> str:
        during = [a for a in self.load.answers if self.down_at <= a.sent < self.up_at]
        unavailable = [a.latency for a in self.load.answers if a.status == 503]
        p99 = statistics.quantiles(unavailable, n=100)[98] if len(unavailable) >= 2 else max(unavailable, default=0)
        errors = sum(a.status >= 500 and a.status != 503 for a in self.load.answers)
        return (f"{name}: {len(self.load.answers)} answers, {len(during)} during the {self.up_at - self.down_at:.1f} s "
                f"outage ({sum(a.status == 201 for a in during)} bookings acknowledged then); "
                f"503s: {len(unavailable)}, latency p50 {statistics.median(unavailable or [0]) * 1000:.1f} ms "
                f"p99 {p99 * 1000:.1f} ms; other 5xx: {errors}; "
                f"acknowledged {len(self.load.acknowledged)}; recovery {self.recovery_secs:.2f} s; "
                f"failed after the restart: {self._after_restart()}")

    def _after_restart(self) -> dict[str, int]:
        failed = self.load.failures_after(self.up_at)
        return dict(Counter(f"{a.status} {a.code} +{a.sent - self.up_at:.0f}s" for a in failed).most_common(12))


async def _experiment(stack: Stack, stop_server: Callable[[], None], start_server: Callable[[], object]) -> Outcome:
    load, stop = Load(), asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(stack.base, timeout=timeout) as http:
        clients = [asyncio.create_task(_client(http, stack, load, stop, seed)) for seed in range(CLIENTS)]
        await asyncio.sleep(WARMUP_SECS)
        down_at = time.monotonic()
        await asyncio.to_thread(stop_server)
        readyz = []
        await asyncio.sleep(1.2)  # past /readyz's one-second cache
        readyz.append(await _readyz(http))
        await asyncio.sleep(max(0.0, OUTAGE_SECS - (time.monotonic() - down_at)))
        await asyncio.to_thread(start_server)
        up_at = time.monotonic()
        deadline = up_at + MAX_RECOVERY_SECS + CLEAN_RUN_SECS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            clean_since = max((a.sent + a.latency for a in load.failures_after(up_at)), default=up_at)
            if time.monotonic() - clean_since >= CLEAN_RUN_SECS:
                break
        stop.set()
        await asyncio.gather(*clients)
    return Outcome(load, down_at, up_at, readyz)


async def _stored_rentals(stack: Stack) -> set[str]:
    assert stack.settings.database_url
    pool = await create_pool(stack.settings.database_url, max_size=1)
    try:
        rows = await pool.fetch("SELECT id FROM rentals WHERE renter_id = ANY($1::uuid[])",
                                [uuid.UUID(r["id"]) for r in stack.renters])
    finally:
        await pool.close()
    return {str(row["id"]) for row in rows}


def _check(outcome: Outcome, stack: Stack, stored: set[str], before: set[str], *, codes: set[str]) -> None:
    answers = outcome.load.answers
    assert answers and sum(a.status == 201 for a in answers) > 0
    assert {a.status for a in answers} <= {201, 409, 503}, sorted({a.status for a in answers})
    unavailable = [a for a in answers if a.status == 503]
    assert {a.code for a in unavailable} <= codes, {a.code for a in unavailable}
    assert all(a.retry_after for a in unavailable)
    assert max((a.latency for a in unavailable), default=0) < MAX_503_LATENCY_SECS
    assert outcome.recovery_secs < MAX_RECOVERY_SECS
    # Not one acknowledged booking lost, none stored twice: the new rentals are exactly them.
    acknowledged = set(outcome.load.acknowledged.values())
    assert len(acknowledged) == len(outcome.load.acknowledged)
    assert stored - before == acknowledged


async def test_postgres_stopped_immediately_under_booking_load(stack: Stack) -> None:
    before = await _stored_rentals(stack)
    outcome = await _experiment(stack, lambda: stack.postgres.stop(immediate=True), stack.postgres.start)
    print(outcome.report("postgres"))
    _check(outcome, stack, await _stored_rentals(stack), before, codes={"database_unavailable"})
    during = [a for a in outcome.load.answers if outcome.down_at + 0.5 <= a.sent < outcome.up_at]
    assert during and all(a.status == 503 for a in during)
    [(status, ready)] = outcome.readyz_during
    assert status == 503 and ready["checks"]["postgres"]["ok"] is False


async def test_redis_stopped_under_booking_load(stack: Stack) -> None:
    before = await _stored_rentals(stack)
    outcome = await _experiment(stack, stack.redis.stop, stack.redis.start)
    print(outcome.report("redis"))
    _check(outcome, stack, await _stored_rentals(stack), before, codes={"redis_unavailable"})
    [(status, ready)] = outcome.readyz_during
    assert status == 503 and ready["checks"]["redis"]["ok"] is False


async def test_nats_stopped_under_booking_load(stack: Stack) -> None:
    """Bookings do not need NATS (their events wait in the outbox): they go on through the outage,
    and the backlog leaves the outbox once NATS is back."""
    before = await _stored_rentals(stack)
    outcome = await _experiment(stack, stack.nats.stop, stack.nats.start)
    stored = await _stored_rentals(stack)
    _check(outcome, stack, stored, before, codes={"nats_unavailable"})
    during = [a for a in outcome.load.answers if outcome.down_at <= a.sent < outcome.up_at]
    assert sum(a.status == 201 for a in during) > 0
    [(status, ready)] = outcome.readyz_during
    assert status == 503 and ready["checks"]["nats"]["ok"] is False
    assert stack.settings.database_url
    pool = await create_pool(stack.settings.database_url, max_size=1)
    try:
        drained_at = None
        while time.monotonic() < outcome.up_at + 30:
            pending = await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL AND entity_id = ANY($1::text[])",
                list(stored - before))
            if pending == 0:
                drained_at = time.monotonic()
                break
            await asyncio.sleep(0.1)
    finally:
        await pool.close()
    assert drained_at is not None, "the outbox never drained after NATS came back"
    print(outcome.report("nats") + f"; outbox drained {drained_at - outcome.up_at:.2f} s after the restart")

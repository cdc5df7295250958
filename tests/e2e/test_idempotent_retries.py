"""A retry never creates a second thing: creating routes name what they create after (caller,
Idempotency-Key, request), so when the gateway's deadline passes while the shard is still
committing (the client gets a 503 and retries), the retry finds the first outcome.

The shard's commit is delayed for real, without any test hook in the product: the test holds the
lease row of the listing's logical shard `FOR UPDATE`, and every entity commit reads its lease
`FOR SHARE` inside its transaction (actors/shard.py), so the commit waits until the test lets go."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from actors.listing import KIND as LISTING
from actors.periods import local_day, now_utc
from actors.sharding import logical_shard
from sharehub.platform import Platform
from tests.helpers import DRILL, LoggedIn, gateway_with, published_listing, register_and_login

Client = TestClient[Any, Any]
DEADLINE_SECS = 1.0


def _day(offset: int) -> str:
    return (local_day(now_utc()) + timedelta(days=offset)).isoformat()


def impatient_gateway(platform: Platform) -> contextlib.AbstractAsyncContextManager[Client]:
    """The same services behind a gateway whose entity deadline is short."""
    return gateway_with(platform, command_timeout_secs=DEADLINE_SECS)


@contextlib.asynccontextmanager
async def commits_held(platform: Platform, kind: str, entity_id: str) -> AsyncIterator[None]:
    """Every commit to the entity's logical shard waits while this is open."""
    conn: asyncpg.Connection = await asyncpg.connect(platform.settings.database_url)
    try:
        async with conn.transaction():
            locked = await conn.fetchval(
                "SELECT epoch FROM shard_leases WHERE fleet = $1 AND logical_shard = $2 FOR UPDATE",
                platform.settings.fleet, logical_shard(kind, entity_id))
            assert locked is not None, "the shard has no lease yet"
            yield
    finally:
        await conn.close()


async def _rentals_of(platform: Platform, renter: LoggedIn) -> list[asyncpg.Record]:
    return await platform.db.fetch("SELECT id, status FROM rentals WHERE renter_id = $1",
                                   uuid.UUID(renter.user_id))


async def _eventually_count(platform: Platform, renter: LoggedIn, expected: int) -> None:
    for _ in range(100):
        if len(await _rentals_of(platform, renter)) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {expected} rentals, have {len(await _rentals_of(platform, renter))}")


async def test_a_retry_after_the_deadline_passed_mid_commit_books_once(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform, instant_book=True)
    renter = await register_and_login(client)
    body = {"listing_id": listing["id"], "start": _day(30), "end": _day(31)}
    headers = {**renter.auth, "Idempotency-Key": f"book-{uuid.uuid4()}"}
    async with impatient_gateway(platform) as gateway:
        async with commits_held(platform, LISTING, listing["id"]):
            first = await gateway.post("/api/v1/rentals", json=body, headers=headers)
            problem = await first.json()
            assert first.status == 503, problem
            assert problem["code"] == "service_unavailable" and first.headers["Retry-After"]
            # The booking is still waiting for its commit: nothing is stored yet.
            assert await _rentals_of(platform, renter) == []
        await _eventually_count(platform, renter, 1)  # the first try commits after all
        retried = await gateway.post("/api/v1/rentals", json=body, headers=headers)
        rental = await retried.json()
        assert retried.status == 201, rental
        [stored] = await _rentals_of(platform, renter)
        assert rental["id"] == str(stored["id"]) and rental["status"] == "accepted"
        # A third try is replayed from the stored answer: the same rental, byte for byte.
        again = await gateway.post("/api/v1/rentals", json=body, headers=headers)
        assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert await again.json() == rental
    assert len(await _rentals_of(platform, renter)) == 1


async def test_a_retry_that_arrives_while_the_first_try_still_commits_books_once(
        client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform, instant_book=True)
    renter = await register_and_login(client)
    body = {"listing_id": listing["id"], "start": _day(40), "end": _day(40)}
    headers = {**renter.auth, "Idempotency-Key": f"book-{uuid.uuid4()}"}
    async with impatient_gateway(platform) as gateway:
        async with commits_held(platform, LISTING, listing["id"]):
            first = await gateway.post("/api/v1/rentals", json=body, headers=headers)
            second = await gateway.post("/api/v1/rentals", json=body, headers=headers)
            assert (first.status, second.status) == (503, 503)
        retried = await gateway.post("/api/v1/rentals", json=body, headers=headers)
        rental = await retried.json()
        assert retried.status == 201, rental
    rows = await _rentals_of(platform, renter)
    assert [str(r["id"]) for r in rows] == [rental["id"]]


async def test_a_key_whose_request_failed_stays_bound_to_that_request(client: Client, platform: Platform) -> None:
    _, listing = await published_listing(client, platform, instant_book=True)
    renter = await register_and_login(client)
    key = f"book-{uuid.uuid4()}"
    headers = {**renter.auth, "Idempotency-Key": key}
    async with impatient_gateway(platform) as gateway:
        async with commits_held(platform, LISTING, listing["id"]):
            first = await gateway.post("/api/v1/rentals", headers=headers,
                                       json={"listing_id": listing["id"], "start": _day(50), "end": _day(50)})
            assert first.status == 503
        other = await gateway.post("/api/v1/rentals", headers=headers,
                                   json={"listing_id": listing["id"], "start": _day(51), "end": _day(51)})
        assert other.status == 422 and (await other.json())["code"] == "idempotency_key_reused"
    await _eventually_count(platform, renter, 1)


async def test_a_retried_listing_creation_creates_one_listing(client: Client, platform: Platform) -> None:
    await published_listing(client, platform)  # the shard actors are up and hold their leases
    owner = await register_and_login(client)
    headers = {**owner.auth, "Idempotency-Key": f"create-{uuid.uuid4()}"}
    body = {**DRILL, "title": f"Дрель {uuid.uuid4().hex[:6]}"}
    async with impatient_gateway(platform) as gateway:
        # The new listing's id - and so its shard - comes from the key: hold every shard's commits.
        conn: asyncpg.Connection = await asyncpg.connect(platform.settings.database_url)
        try:
            async with conn.transaction():
                held = await conn.execute("SELECT 1 FROM shard_leases WHERE fleet = $1 FOR UPDATE",
                                          platform.settings.fleet)
                assert held == "SELECT 256", held
                first = await gateway.post("/api/v1/listings", json=body, headers=headers)
                assert first.status == 503
        finally:
            await conn.close()
        owned = "SELECT id FROM listings WHERE owner_id = $1"
        for _ in range(100):
            if await platform.db.fetch(owned, uuid.UUID(owner.user_id)):
                break
            await asyncio.sleep(0.05)
        retried = await gateway.post("/api/v1/listings", json=body, headers=headers)
        created = await retried.json()
        assert retried.status == 201, created
    rows = await platform.db.fetch(owned, uuid.UUID(owner.user_id))
    assert [str(r["id"]) for r in rows] == [created["id"]]


async def test_a_retried_step_returns_the_first_outcome(client: Client, platform: Platform) -> None:
    """Not only creation: a step whose answer was lost (a decline, an extension request) is
    answered by its retry as it was the first time, not with "already done" (409)."""
    owner, listing = await published_listing(client, platform)
    renter = await register_and_login(client)
    resp = await client.post("/api/v1/rentals", headers=renter.auth,
                             json={"listing_id": listing["id"], "start": _day(60), "end": _day(61)})
    rental_id = (await resp.json())["id"]
    headers = {**owner.auth, "Idempotency-Key": f"decline-{uuid.uuid4()}"}
    async with impatient_gateway(platform) as gateway:
        async with commits_held(platform, LISTING, listing["id"]):
            first = await gateway.post(f"/api/v1/rentals/{rental_id}/decline", headers=headers,
                                       json={"reason": "Занят"})
            assert first.status == 503
        for _ in range(100):
            if await platform.db.fetchval("SELECT status FROM rentals WHERE id = $1", uuid.UUID(rental_id)) \
                    == "declined":
                break
            await asyncio.sleep(0.05)
        retried = await gateway.post(f"/api/v1/rentals/{rental_id}/decline", headers=headers, json={"reason": "Занят"})
        assert retried.status == 200, await retried.text()
        assert (await retried.json())["status"] == "declined"
        # Without the key, the same step is a new command and is refused: it was already done.
        plain = await gateway.post(f"/api/v1/rentals/{rental_id}/decline", headers=owner.auth)
        assert plain.status == 409

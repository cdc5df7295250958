"""Search replicas against the real stream: a rebuild and a newly added replica equal the index
kept by following events; a restarted replica resumes where it acked instead of rebuilding;
`sharehub reindex` swaps in a new index while the old one answers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tantivy import Query

from actors.periods import day_start, local_day, now_utc
from search.documents import listing_key
from search.replica import SearchReplica
from search.request import SearchRequest
from sharehub.config import Settings
from sharehub.platform import Platform
from tests.helpers import published_listing, register_and_login

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("event_pipeline")


def _word() -> str:
    return "иота" + "".join("абвгдежзиклмнопрстуфхцчшщ"[int(c, 16)] for c in uuid.uuid4().hex[:8])


def _replica(settings: Settings, name: str, data_dir: Path) -> SearchReplica:
    assert settings.database_url and settings.nats_url
    return SearchReplica(name, data_dir, database_url=settings.database_url, nats_url=settings.nats_url)


@pytest.fixture
async def started(migrated: Settings, tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[SearchReplica]]]:
    replicas: list[SearchReplica] = []

    async def start(name: str) -> SearchReplica:
        replica = _replica(migrated, f"{name}-{uuid.uuid4().hex[:6]}", tmp_path / name)
        await replica.start()
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        await replica.stop()


def _documents(replica: SearchReplica, word: str) -> dict[str, dict[str, Any]]:
    """Every stored field of the documents whose title has `word`."""
    assert replica.engine is not None
    index = replica.engine.index
    searcher = index.searcher()
    hits = searcher.search(Query.term_query(index.schema, "title_words", word), 100).hits
    return {doc["id"][0]: doc for doc in (searcher.doc(address).to_dict() for _, address in hits)}


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _market(client: Client, platform: Platform, word: str) -> dict[str, str]:
    """Five listings with `word`: published, edited, paused, archived, booked next month."""
    ids = {}
    for name in ("plain", "edited", "paused", "archived", "booked"):
        owner, listing = await published_listing(client, platform, title=f"Дрель {word} {name}")
        ids[name] = listing["id"]
        if name == "edited":
            resp = await client.patch(f"/api/v1/listings/{listing['id']}", headers=owner.auth,
                                      json={"price_per_unit": 77_700, "instant_book": True})
            assert resp.status == 200, await resp.text()
        elif name in ("paused", "archived"):
            action = "pause" if name == "paused" else "archive"
            assert (await client.post(f"/api/v1/listings/{listing['id']}/{action}", headers=owner.auth)).status == 200
        elif name == "booked":
            renter = await register_and_login(client)
            today = local_day(now_utc())
            resp = await client.post("/api/v1/rentals", headers=renter.auth, json={
                "listing_id": listing["id"], "start": (today + timedelta(days=30)).isoformat(),
                "end": (today + timedelta(days=31)).isoformat()})
            assert resp.status == 201, await resp.text()
    return ids


def _booked_out(replica: SearchReplica, listing_id: str) -> bool:
    assert replica.engine is not None
    start = day_start(local_day(now_utc()) + timedelta(days=30))
    return listing_key(listing_id) in replica.engine.book.unavailable(start, start + timedelta(days=2))


async def test_rebuild_and_a_new_replica_equal_the_followed_index(
        client: Client, platform: Platform, started: Callable[[str], Awaitable[SearchReplica]]) -> None:
    word = _word()
    following = await started("following")
    ids = await _market(client, platform, word)
    expected = {ids["plain"], ids["edited"], ids["booked"]}

    def settled() -> bool:
        if following.applying:  # calendars change before the batch's index commit completes
            return False
        documents = _documents(following, word)
        return set(documents) == expected and documents[ids["edited"]]["price"] == [77_700] \
            and _booked_out(following, ids["booked"])

    await _until(settled, "the followed index never reflected the changes")
    incremental = _documents(following, word)

    await following.rebuild()
    rebuilt = _documents(following, word)
    assert rebuilt == incremental
    assert _booked_out(following, ids["booked"])

    added = await started("added")  # builds from Postgres and follows from there: no coordination
    assert _documents(added, word) == incremental
    assert _booked_out(added, ids["booked"]) and not _booked_out(added, ids["plain"])
    results = [r.search(SearchRequest(q=word, sort="price_asc")).as_dict() for r in (following, added)]
    for result in results:
        del result["took_ms"]
    assert results[0] == results[1] and results[0]["total"] == 3


async def test_a_restarted_replica_resumes_from_its_last_ack(
        client: Client, platform: Platform, migrated: Settings, tmp_path: Path) -> None:
    word = _word()
    name = f"restart-{uuid.uuid4().hex[:6]}"
    replica = _replica(migrated, name, tmp_path / "r")
    await replica.start()
    pointer = (tmp_path / "r" / "current.json").read_bytes()
    await replica.stop()

    # Published while the replica is down: the stream keeps the events for its durable consumer.
    _, listing = await published_listing(client, platform, title=f"Палатка {word}")
    replica = _replica(migrated, name, tmp_path / "r")
    await replica.start()
    try:
        assert (tmp_path / "r" / "current.json").read_bytes() == pointer  # opened, not rebuilt
        assert replica.progress.phase == "idle" and replica.progress.total == 0
        await _until(lambda: listing["id"] in _documents(replica, word), "missed an event from while it was down")
    finally:
        await replica.stop()


async def test_reindex_command_rebuilds_a_running_replica(
        client: Client, platform: Platform, migrated: Settings, search_replica: str) -> None:
    word = _word()
    _, listing = await published_listing(client, platform, title=f"Велосипед {word}")
    env = {**os.environ, "RAY_ADDRESS": migrated.ray_address or "", "DATABASE_URL": migrated.database_url or ""}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sharehub", "reindex", "--replica",
                         search_replica.removeprefix("search-")],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{search_replica}: " in done.stdout and "listings indexed" in done.stdout
    assert "100%" in done.stderr  # the progress bar
    resp = await client.get("/api/v1/search", params={"q": word})
    assert [item["id"] for item in (await resp.json())["items"]] == [listing["id"]]


async def test_malformed_events_are_skipped_without_stalling_the_batch(
        client: Client, platform: Platform, started: Callable[[str], Awaitable[SearchReplica]]) -> None:
    word = _word()
    replica = await started("malformed")
    _, listing = await published_listing(client, platform, title=f"Дрель {word}")
    await replica.apply([
        {"entity_id": "not-a-uuid", "type": "updated"},
        {"entity_id": listing["id"], "type": "availability_changed", "data": {"change": "held"}},  # no rental
        {"entity_id": listing["id"], "type": "published", "seq": 3, "epoch": "x"},
    ])
    assert listing["id"] in _documents(replica, word)
    assert replica._decode(b"{not json") is None and replica._decode(b"[1, 2]") is None

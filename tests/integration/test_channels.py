"""Channel sequence numbers in the outbox and replays from them (storage/channels.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sharehub.platform import Platform
from storage import channels
from storage import runtime as store
from storage.db import transaction


def _event(kind: str, entity_id: str, event_type: str = "ping", **data: Any) -> tuple[Any, ...]:
    event_id = uuid.uuid4()
    payload = {"event_id": str(event_id), "type": event_type, "kind": kind, "entity_id": entity_id,
               "version": 0, "occurred_at": "2026-11-27T00:00:00+00:00", "data": data}
    return (event_id, f"{kind}.{entity_id}.{event_type}", kind, entity_id, event_type, payload)


async def _write(platform: Platform, rows: list[tuple[Any, ...]]) -> None:
    async with transaction(platform.db, "test_outbox") as conn:
        await store.add_outbox_events(conn, rows)


async def test_each_channel_counts_its_own_events_without_gaps(platform: Platform) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await _write(platform, [_event("listing", a, n=1), _event("listing", b, n=1), _event("listing", a, n=2)])
    await _write(platform, [_event("listing", a, n=3)])
    replay = await channels.replay(platform.db, "listing", a, 0)
    assert replay.complete and replay.head == 3
    assert [(e["seq"], e["data"]["n"]) for e in replay.events] == [(1, 1), (2, 2), (3, 3)]
    assert {e["epoch"] for e in replay.events} == {replay.epoch} and replay.epoch
    assert (await channels.head(platform.db, "listing", b))[1] == 1
    assert await channels.head(platform.db, "listing", str(uuid.uuid4())) == ("", 0)


async def test_concurrent_writers_of_one_channel_never_share_or_skip_a_seq(platform: Platform) -> None:
    user = str(uuid.uuid4())
    await asyncio.gather(*(_write(platform, [_event("user", user, i=i), _event("user", user, i=i)])
                           for i in range(20)))
    rows = await platform.db.fetch("SELECT seq FROM outbox WHERE entity_kind = 'user' AND entity_id = $1", user)
    assert sorted(r["seq"] for r in rows) == list(range(1, 41))


async def test_a_replay_answers_what_was_missed_or_says_resync(platform: Platform) -> None:
    chat = str(uuid.uuid4())
    await _write(platform, [_event("chat", chat, n=n) for n in range(1, 6)])
    missed = await channels.replay(platform.db, "chat", chat, 3)
    assert missed.complete and [e["seq"] for e in missed.events] == [4, 5]
    assert (await channels.replay(platform.db, "chat", chat, 5)).events == []
    # From a future seq, another epoch, or further back than a replay goes: refetch over REST.
    assert not (await channels.replay(platform.db, "chat", chat, 9)).complete
    assert not (await channels.replay(platform.db, "chat", chat, 0, epoch="other")).complete
    assert not (await channels.replay(platform.db, "chat", chat, 0, limit=3)).complete
    assert await channels.events_between(platform.db, "chat", chat, 1, 3) == [e for e in (
        await channels.replay(platform.db, "chat", chat, 1)).events if e["seq"] <= 3]


async def test_purged_history_is_a_resync_not_a_silent_gap(platform: Platform) -> None:
    rental = str(uuid.uuid4())
    await _write(platform, [_event("rental", rental, n=n) for n in range(1, 4)])
    await platform.db.execute(
        """UPDATE outbox SET published_at = now() - interval '30 days'
           WHERE entity_kind = 'rental' AND entity_id = $1 AND seq <= 2""", rental)
    assert await channels.purge_published(platform.db) >= 2
    assert not (await channels.replay(platform.db, "rental", rental, 0)).complete
    recent = await channels.replay(platform.db, "rental", rental, 2)
    assert recent.complete and [e["seq"] for e in recent.events] == [3]

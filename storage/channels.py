"""Channel history: what a realtime client missed, read back from the outbox.

A channel is the event stream of one entity (`listing`, `rental`, `chat`) or of one user's
notifications (`user`). `storage.runtime.add_outbox_events` numbers each channel's events 1, 2, 3 …
in commit order, so "everything after seq N" is one index range scan, and a hole in that range
means the rows were purged (retention) and the client must refetch its state over REST."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from storage.db import delete_in_batches

# A client further behind than this refetches over REST rather than replaying.
MAX_REPLAY = 500
# Published events are kept this long for replays, then purged.
RETENTION_DAYS = 7


@dataclass(frozen=True)
class Replay:
    """The events after `since`, or `complete=False` when they cannot all be replayed (purged,
    too many, or `since` from another epoch): the client then refetches over REST and resumes
    from `head`."""

    epoch: str
    head: int
    events: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True


async def head(conn: asyncpg.Connection | asyncpg.Pool, kind: str, entity_id: str) -> tuple[str, int]:
    """(epoch, last seq) of a channel; a channel with no events yet is ("", 0)."""
    row = await conn.fetchrow(
        "SELECT epoch, seq FROM channel_heads WHERE entity_kind = $1 AND entity_id = $2", kind, entity_id)
    return (row["epoch"], row["seq"]) if row else ("", 0)


async def replay(conn: asyncpg.Connection | asyncpg.Pool, kind: str, entity_id: str, since: int,
                 epoch: str | None = None, *, limit: int = MAX_REPLAY) -> Replay:
    current_epoch, last = await head(conn, kind, entity_id)
    if (epoch and current_epoch and epoch != current_epoch) or since > last or since < 0:
        return Replay(current_epoch, last, complete=False)
    if since == last:
        return Replay(current_epoch, last)
    if last - since > limit:
        return Replay(current_epoch, last, complete=False)
    rows = await conn.fetch(
        """SELECT seq, payload FROM outbox
           WHERE entity_kind = $1 AND entity_id = $2 AND seq > $3 AND seq <= $4 ORDER BY seq""",
        kind, entity_id, since, last)
    if len(rows) != last - since:  # purged (or written before channels had seqs)
        return Replay(current_epoch, last, complete=False)
    return Replay(current_epoch, last, [row["payload"] for row in rows])


async def events_between(conn: asyncpg.Connection | asyncpg.Pool, kind: str, entity_id: str, after: int,
                         up_to: int) -> list[dict[str, Any]]:
    """The committed events with after < seq <= up_to (a gap a live subscriber noticed)."""
    rows = await conn.fetch(
        """SELECT payload FROM outbox
           WHERE entity_kind = $1 AND entity_id = $2 AND seq > $3 AND seq <= $4 ORDER BY seq""",
        kind, entity_id, after, up_to)
    return [row["payload"] for row in rows]


async def purge_published(conn: asyncpg.Connection | asyncpg.Pool, *, days: int = RETENTION_DAYS,
                          batch: int = 10_000, max_batches: int = 100) -> int:
    """Drop published events older than the retention (returns how many)."""
    return await delete_in_batches(
        conn, """DELETE FROM outbox WHERE id IN (
                     SELECT id FROM outbox WHERE published_at < now() - make_interval(days => $1) LIMIT $2)""",
        days, batch=batch, max_batches=max_batches)

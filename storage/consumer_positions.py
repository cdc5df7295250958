"""Where each domain-event consumer stands in each channel: the last seq it applied.

Written only by `sharehub/consumers.py`, which decides with these rows whether an event is a
redelivery, early (an earlier event of its channel is not applied yet) or next. A channel is the
entity an event is about (`entity_kind`, `entity_id`, numbered by `storage.runtime.add_outbox_events`);
the outbox is where the events a consumer should have seen are looked up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.channels import RETENTION_DAYS
from storage.db import delete_in_batches

Conn = asyncpg.Connection | asyncpg.Pool

_COLUMNS = "epoch, seq, failing_seq, failures, extract(epoch FROM now() - waiting_since)::float8 AS waited_secs"


@dataclass(frozen=True)
class Key:
    """One consumer's place in one channel."""

    consumer: str
    kind: str
    entity_id: str


@dataclass(frozen=True)
class Position:
    epoch: str
    seq: int  # the last seq applied or given up
    failing_seq: int | None  # the next event, once it has failed
    failures: int
    waited_secs: float | None  # how long a later event has waited for a missing one


@dataclass(frozen=True)
class Missing:
    """The earliest event between the position and an arriving one that the consumer wants and
    has not applied, and whether any such event is not published yet or is the failing one."""

    seq: int
    unpublished: bool
    failing: bool


def _position(row: asyncpg.Record) -> Position:
    return Position(row["epoch"], row["seq"], row["failing_seq"], row["failures"], row["waited_secs"])


async def horizon(conn: Conn, consumer: str) -> datetime:
    """When `consumer` started applying in order (recorded on its first start)."""
    await conn.execute("INSERT INTO consumer_horizons (consumer) VALUES ($1) ON CONFLICT DO NOTHING", consumer)
    since: datetime = await conn.fetchval("SELECT since FROM consumer_horizons WHERE consumer = $1", consumer)
    return since


async def lock(conn: asyncpg.Connection, key: Key, epoch: str) -> Position:
    """The consumer's position in the channel, locked until the transaction ends; a channel it
    has not seen starts at 0 in `epoch`. Two processes with events of one channel queue here."""
    select = f"""SELECT {_COLUMNS} FROM consumer_positions
                 WHERE consumer = $1 AND entity_kind = $2 AND entity_id = $3 FOR UPDATE"""
    row = await conn.fetchrow(select, key.consumer, key.kind, key.entity_id)
    if row is None:
        await conn.execute(
            """INSERT INTO consumer_positions (consumer, entity_kind, entity_id, epoch, seq)
               VALUES ($1, $2, $3, $4, 0) ON CONFLICT DO NOTHING""",
            key.consumer, key.kind, key.entity_id, epoch)
        row = await conn.fetchrow(select, key.consumer, key.kind, key.entity_id)
    assert row is not None
    return _position(row)


async def restart(conn: asyncpg.Connection, key: Key, epoch: str) -> Position:
    """The channel was reset (a new epoch): its seqs start again, and so does the position."""
    row = await conn.fetchrow(
        f"""UPDATE consumer_positions
               SET epoch = $4, seq = 0, failing_seq = NULL, failures = 0, waiting_since = NULL, updated_at = now()
             WHERE consumer = $1 AND entity_kind = $2 AND entity_id = $3
             RETURNING {_COLUMNS}""",
        key.consumer, key.kind, key.entity_id, epoch)
    assert row is not None
    return _position(row)


async def first_missing(conn: asyncpg.Connection, kind: str, entity_id: str, epoch: str, *, after: int,
                        before: int, subject_patterns: list[str], horizon: datetime,
                        failing_seq: int | None) -> Missing | None:
    """Events after < seq < before of the channel's `epoch` whose subject matches one of
    `subject_patterns` (POSIX regexes of the consumer's filter subjects) - except those published
    before `horizon`, which the consumer never receives - or None. Purged rows are simply not there."""
    row = await conn.fetchrow(
        """SELECT min(seq) AS seq, coalesce(bool_or(published_at IS NULL), false) AS unpublished,
                  coalesce(bool_or(seq = $8), false) AS failing
             FROM outbox
            WHERE entity_kind = $1 AND entity_id = $2 AND seq > $3 AND seq < $4
              AND payload->>'epoch' = $5 AND subject ~ ANY($6::text[])
              AND (published_at IS NULL OR published_at >= $7)""",
        kind, entity_id, after, before, epoch, subject_patterns, horizon, failing_seq)
    if row is None or row["seq"] is None:
        return None
    return Missing(row["seq"], row["unpublished"], row["failing"])


async def wait(conn: asyncpg.Connection, key: Key) -> None:
    """A later event found an earlier one missing: start the patience clock (if not running)."""
    await conn.execute(
        """UPDATE consumer_positions SET waiting_since = coalesce(waiting_since, now())
            WHERE consumer = $1 AND entity_kind = $2 AND entity_id = $3""",
        key.consumer, key.kind, key.entity_id)


async def advance(conn: asyncpg.Connection, key: Key, epoch: str, seq: int) -> None:
    """The event `seq` is applied (or given up): the position moves to it, nothing is failing or
    waiting any more."""
    await conn.execute(
        """UPDATE consumer_positions
              SET seq = greatest(seq, $5), failing_seq = NULL, failures = 0, waiting_since = NULL, updated_at = now()
            WHERE consumer = $1 AND entity_kind = $2 AND entity_id = $3 AND epoch = $4""",
        key.consumer, key.kind, key.entity_id, epoch, seq)


async def record_failure(conn: asyncpg.Connection, key: Key, epoch: str, seq: int) -> int | None:
    """One more failed attempt at `seq`; returns how many in a row (None: the row is in another
    epoch - the channel was reset under the event)."""
    failures: int | None = await conn.fetchval(
        """INSERT INTO consumer_positions AS p (consumer, entity_kind, entity_id, epoch, seq, failing_seq, failures)
           VALUES ($1, $2, $3, $4, 0, $5, 1)
           ON CONFLICT (consumer, entity_kind, entity_id) DO UPDATE
             SET failures = CASE WHEN p.failing_seq = excluded.failing_seq THEN p.failures + 1 ELSE 1 END,
                 failing_seq = excluded.failing_seq, updated_at = now()
             WHERE p.epoch = excluded.epoch
           RETURNING failures""",
        key.consumer, key.kind, key.entity_id, epoch, seq)
    return failures


async def purge_idle(conn: Conn, *, days: int = RETENTION_DAYS, batch: int = 10_000, max_batches: int = 100) -> int:
    """Drop positions idle longer than the outbox retention whose channel has no outbox row left
    at or below them (returns how many). Such a row is not needed: if the channel speaks again,
    a new position starts at 0 and waits only for the rows still in the outbox - the ones after
    the old position."""
    return await delete_in_batches(
        conn, """DELETE FROM consumer_positions WHERE (consumer, entity_kind, entity_id) IN (
                     SELECT p.consumer, p.entity_kind, p.entity_id FROM consumer_positions p
                      WHERE p.updated_at < now() - make_interval(days => $1)
                        AND NOT EXISTS (SELECT 1 FROM outbox o
                                         WHERE o.entity_kind = p.entity_kind AND o.entity_id = p.entity_id
                                           AND o.seq <= p.seq)
                      LIMIT $2)""",
        days, batch=batch, max_batches=max_batches)

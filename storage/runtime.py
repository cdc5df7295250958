"""SQL for the entity runtime: shard leases, processed commands, the outbox."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from storage.db import delete_in_batches


async def take_leases(conn: asyncpg.Connection, fleet: str, shards: list[int], owner: str) -> dict[int, int]:
    """Become the owner of `shards`, each with a new, higher epoch. Any previous owner is fenced
    off from that moment: its next write sees a different epoch and is refused."""
    rows = await conn.fetch(
        """INSERT INTO shard_leases (fleet, logical_shard, owner, epoch)
           SELECT $1, shard, $3, 1 FROM unnest($2::int[]) AS shard
           ON CONFLICT (fleet, logical_shard) DO UPDATE
             SET owner = EXCLUDED.owner, epoch = shard_leases.epoch + 1, acquired_at = now()
           RETURNING logical_shard, epoch""",
        fleet, shards, owner,
    )
    return {row["logical_shard"]: row["epoch"] for row in rows}


async def check_leases(conn: asyncpg.Connection, fleet: str, epochs: dict[int, int]) -> bool:
    """Inside the write's transaction: are these still our epochs?"""
    ours, _ = await check_group(conn, fleet, epochs, [])
    return ours


async def check_group(conn: asyncpg.Connection, fleet: str, epochs: dict[int, int],
                      command_ids: list[uuid.UUID]) -> tuple[bool, bool]:
    """Inside the write's transaction, in one round trip: (are these still our lease epochs; has
    any of these commands been stored before - a retry). The epochs are read FOR SHARE, so a
    concurrent takeover waits for this transaction: a write either commits before the takeover
    or is refused after it."""
    row = await conn.fetchrow(
        """WITH ours AS (
               SELECT logical_shard, epoch FROM shard_leases
               WHERE fleet = $1 AND logical_shard = ANY($2::int[]) ORDER BY logical_shard FOR SHARE)
           SELECT (SELECT coalesce(array_agg(logical_shard ORDER BY logical_shard), '{}') FROM ours) AS shards,
                  (SELECT coalesce(array_agg(epoch ORDER BY logical_shard), '{}') FROM ours) AS epochs,
                  EXISTS (SELECT 1 FROM processed_commands WHERE command_id = ANY($3::uuid[])) AS retried""",
        fleet, sorted(epochs), command_ids,
    )
    assert row is not None
    return dict(zip(row["shards"], row["epochs"], strict=True)) == epochs, bool(row["retried"])


async def record_commands(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, str, str, dict[str, Any]]]) -> None:
    await conn.executemany(
        "INSERT INTO processed_commands (command_id, entity_kind, entity_id, result) VALUES ($1, $2, $3, $4)",
        rows,
    )


async def stored_results(conn: asyncpg.Connection | asyncpg.Pool, command_ids: list[uuid.UUID]
                         ) -> dict[uuid.UUID, dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT command_id, result FROM processed_commands WHERE command_id = ANY($1::uuid[])", command_ids
    )
    return {row["command_id"]: row["result"] for row in rows}


OUTBOX_CHANNEL = "sharehub_outbox"


async def add_outbox_events(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, str, str, str, str, Any]]) -> None:
    """rows: (event id, subject, kind, entity id, event type, payload), in order.

    Each event gets the next gap-free `seq` of its channel (the entity it is about) and the
    channel's `epoch`, in its row and in its payload: the head row is locked until commit, so a
    later seq never commits before an earlier one. The NOTIFY wakes the relay at commit."""
    if not rows:
        return
    ids, subjects, kinds, entity_ids, types, payloads = (list(column) for column in zip(*rows, strict=True))
    await conn.execute(
        """WITH ev AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
                   WITH ORDINALITY AS e(id, subject, entity_kind, entity_id, event_type, payload, ord)
           ), counts AS (
               SELECT entity_kind, entity_id, count(*) AS n FROM ev GROUP BY entity_kind, entity_id
           ), heads AS (
               INSERT INTO channel_heads AS h (entity_kind, entity_id, seq)
               SELECT entity_kind, entity_id, n FROM counts ORDER BY entity_kind, entity_id
               ON CONFLICT (entity_kind, entity_id) DO UPDATE SET seq = h.seq + excluded.seq
               RETURNING h.entity_kind, h.entity_id, h.seq, h.epoch
           ), numbered AS (
               SELECT ev.*, heads.seq - counts.n
                          + row_number() OVER (PARTITION BY ev.entity_kind, ev.entity_id ORDER BY ev.ord) AS seq,
                      heads.epoch
               FROM ev JOIN counts USING (entity_kind, entity_id) JOIN heads USING (entity_kind, entity_id)
           ), notified AS (
               SELECT pg_notify($7, '') AS done
           )
           INSERT INTO outbox (id, subject, entity_kind, entity_id, event_type, payload, seq)
           SELECT id, subject, entity_kind, entity_id, event_type,
                  payload || jsonb_build_object('seq', seq, 'epoch', epoch), seq
           FROM numbered CROSS JOIN notified ORDER BY ord""",
        ids, subjects, kinds, entity_ids, types, payloads, OUTBOX_CHANNEL,
    )


async def claim_unpublished(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, subject, entity_kind, entity_id, event_type, payload, created_at FROM outbox
           WHERE published_at IS NULL ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return rows


async def mark_published(conn: asyncpg.Connection, event_ids: list[uuid.UUID]) -> None:
    await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])", event_ids)


async def mark_unroutable(conn: asyncpg.Connection, event_ids: list[uuid.UUID]) -> None:
    """Events no stream takes leave the queue (see migrations/0012) without reaching NATS."""
    await conn.execute("UPDATE outbox SET published_at = now(), unroutable = true WHERE id = ANY($1::uuid[])",
                       event_ids)


async def mark_consumed(conn: asyncpg.Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """True the first time a consumer sees an event; False on a redelivery."""
    result = await conn.execute(
        "INSERT INTO consumed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer, event_id,
    )
    return bool(result == "INSERT 0 1")


async def set_timers(conn: asyncpg.Connection, fleet: str, timers: list[tuple[int, str, str, str, Any, Any]]) -> None:
    """timers: (logical shard, kind, entity id, name, fire at, payload); a timer of the same name
    is replaced, with a new command id (so a firing of the old one cannot consume the new one).
    A replaced timer starts afresh - live, no attempts, no error - even if the old one had died:
    the entity decided anew, so the old one's failures say nothing about it."""
    await conn.executemany(
        """INSERT INTO entity_timers (fleet, logical_shard, entity_kind, entity_id, name, fire_at, command_id, payload)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (entity_kind, entity_id, name) DO UPDATE
             SET fire_at = EXCLUDED.fire_at, command_id = EXCLUDED.command_id, payload = EXCLUDED.payload,
                 fleet = EXCLUDED.fleet, logical_shard = EXCLUDED.logical_shard,
                 state = 'live', attempts = 0, retry_at = NULL, last_error_code = NULL,
                 last_error_detail = NULL, last_failed_at = NULL, dead_at = NULL""",
        [(fleet, shard, kind, entity_id, name, fire_at, uuid.uuid4(), payload)
         for shard, kind, entity_id, name, fire_at, payload in timers],
    )


async def cancel_timers(conn: asyncpg.Connection, timers: list[tuple[str, str, str]]) -> None:
    """timers: (kind, entity id, name)."""
    await conn.executemany(
        "DELETE FROM entity_timers WHERE entity_kind = $1 AND entity_id = $2 AND name = $3", timers
    )


async def consume_timer(conn: asyncpg.Connection, kind: str, entity_id: str, name: str, command_id: uuid.UUID) -> None:
    """Remove a timer that has fired, unless it was re-set meanwhile (then it has a new command id)."""
    await conn.execute(
        """DELETE FROM entity_timers
           WHERE entity_kind = $1 AND entity_id = $2 AND name = $3 AND command_id = $4""",
        kind, entity_id, name, command_id,
    )


async def due_timers(
    conn: asyncpg.Connection | asyncpg.Pool, fleet: str, shards: list[int], limit: int
) -> list[asyncpg.Record]:
    """Live timers due now (a failed one when its backoff is over), soonest first; dead timers
    never come back here (the partial index `entity_timers_due` holds live ones only)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT entity_kind, entity_id, name, command_id, payload FROM entity_timers
           WHERE fleet = $1 AND logical_shard = ANY($2::int[]) AND state = 'live'
             AND coalesce(retry_at, fire_at) <= now()
           ORDER BY coalesce(retry_at, fire_at) LIMIT $3""",
        fleet, shards, limit,
    )
    return rows


_PURGES = (
    """DELETE FROM processed_commands WHERE command_id IN (
           SELECT command_id FROM processed_commands
           WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)""",
    """DELETE FROM consumed_events WHERE (consumer, event_id) IN (
           SELECT consumer, event_id FROM consumed_events
           WHERE consumed_at < now() - make_interval(secs => $1) LIMIT $2)""",
)


async def purge_processed(pool: asyncpg.Pool, older_than_secs: float) -> int:
    """Forget command results and consumed-event marks older than the retry horizon (returns how
    many rows went)."""
    return sum([await delete_in_batches(pool, statement, older_than_secs) for statement in _PURGES])

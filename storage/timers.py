"""SQL for failing durable timers: attempts, backoff, the dead letter, and what admins see of it.

Timers are written by the shard that owns their entity (`storage/runtime.py` sets, cancels,
consumes and polls them); this module records their failed firings for that shard, and lists and
re-arms failed ones for admins. The rules (how long to back off, when a timer is dead) live in
`actors/timer_policy.py`."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

_COLUMNS = """command_id, fleet, entity_kind, entity_id, name, state, attempts, fire_at, retry_at, payload,
              last_error_code, last_error_detail, last_failed_at, dead_at"""

# (kind, entity id, name, command id, logical shard, lease epoch, error code, error detail,
#  whether it spends an attempt)
TimerFailure = tuple[str, str, str, uuid.UUID, int, int, str, str, bool]


async def record_failures(
    conn: asyncpg.Connection | asyncpg.Pool, fleet: str, failures: list[TimerFailure], *,
    backoff_secs: float, max_backoff_secs: float, max_attempts: int, outage_delay_secs: float,
) -> list[asyncpg.Record]:
    """Failed firings, in one statement. A failure that spends an attempt moves the next try to
    now + min(max_backoff, backoff * 2**attempts so far) and marks the timer dead at
    `max_attempts`; one that does not (an outage) only moves it by `outage_delay_secs`.

    Only the firing's own timer is touched (same command id: not one re-set meanwhile), only while
    it is live, and only while the firing shard's lease epoch is current (a newer owner fires it
    itself). Returns the timers updated, with their new state and attempts."""
    if not failures:
        return []
    columns = [list(column) for column in zip(*failures, strict=True)]
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE entity_timers AS t
           SET attempts = t.attempts + f.spends::int,
               state = CASE WHEN f.spends AND t.attempts + 1 >= $11 THEN 'dead' ELSE 'live' END,
               dead_at = CASE WHEN f.spends AND t.attempts + 1 >= $11 THEN now() END,
               retry_at = now() + make_interval(secs => CASE WHEN f.spends
                                                             THEN least($13, $12 * power(2, t.attempts))
                                                             ELSE $14 END),
               last_error_code = f.code, last_error_detail = left(f.detail, 500), last_failed_at = now()
           FROM unnest($2::text[], $3::text[], $4::text[], $5::uuid[], $6::int[], $7::bigint[], $8::text[],
                       $9::text[], $10::bool[])
                AS f(entity_kind, entity_id, name, command_id, logical_shard, epoch, code, detail, spends)
           WHERE t.entity_kind = f.entity_kind AND t.entity_id = f.entity_id AND t.name = f.name
             AND t.command_id = f.command_id AND t.state = 'live'
             AND EXISTS (SELECT 1 FROM shard_leases l
                         WHERE l.fleet = $1 AND l.logical_shard = f.logical_shard AND l.epoch = f.epoch)
           RETURNING t.entity_kind, t.entity_id, t.name, t.state, t.attempts, t.last_error_code""",
        fleet, *columns, max_attempts, backoff_secs, max_backoff_secs, outage_delay_secs,
    )
    return rows


async def count_dead(conn: asyncpg.Connection | asyncpg.Pool, fleet: str, shards: list[int]) -> int:
    count: int = await conn.fetchval(
        """SELECT count(*) FROM entity_timers
           WHERE last_failed_at IS NOT NULL AND state = 'dead' AND fleet = $1 AND logical_shard = ANY($2::int[])""",
        fleet, shards,
    )
    return count


async def list_failed(
    conn: asyncpg.Connection | asyncpg.Pool, *, state: str, kind: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Timers that have failed, in `state` ('dead', or 'live' = backing off or re-armed), the
    latest failure first."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM entity_timers
            WHERE last_failed_at IS NOT NULL AND state = $1 AND ($2::text IS NULL OR entity_kind = $2)
            ORDER BY last_failed_at DESC, entity_kind, entity_id, name LIMIT $3 OFFSET $4""",
        state, kind, limit, offset,
    )
    return [dict(r) for r in rows]


async def rearm(conn: asyncpg.Connection | asyncpg.Pool, command_id: uuid.UUID) -> dict[str, Any] | None:
    """A failed timer (dead or backing off) fires again on its shard's next poll, with its
    attempts from zero; its last error stays until it fires or fails again. None if no failed
    timer has this id (it fired, was cancelled or re-set - a new id - or never failed)."""
    row = await conn.fetchrow(
        f"""UPDATE entity_timers SET state = 'live', attempts = 0, retry_at = NULL, dead_at = NULL
            WHERE command_id = $1 AND last_failed_at IS NOT NULL
            RETURNING {_COLUMNS}""",
        command_id,
    )
    return dict(row) if row is not None else None

"""SQL for `idempotency_keys` (Stripe-style Idempotency-Key handling, rules in gateway/idempotency.py)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

# How long a key is remembered, and how long an in-progress claim blocks a duplicate before it is
# considered abandoned (its process died, or the database failed before it could be reopened) and
# may be taken over: longer than any request runs (the entity command deadline is 10 s).
KEY_RETENTION_SECS = 24 * 3600
IN_PROGRESS_LOCK_SECS = 20


@dataclass(frozen=True)
class StoredKey:
    operation: str
    request_hash: str
    state: str
    response_status: int | None
    response_body: bytes | None


async def claim_key(
    pool: asyncpg.Pool, *, scope: str, key: str, operation: str, request_hash: str
) -> StoredKey | None:
    """Claim the key for this request. None = claimed, go ahead; otherwise the existing record."""
    async with pool.acquire() as conn:
        record = await conn.fetchrow(
            """INSERT INTO idempotency_keys (scope, key, operation, request_hash, locked_until, expires_at)
               VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5),
                       now() + make_interval(secs => $6))
               ON CONFLICT (scope, key) DO UPDATE
                 SET operation = EXCLUDED.operation, request_hash = EXCLUDED.request_hash,
                     state = 'in_progress', response_status = NULL, response_body = NULL,
                     created_at = now(), locked_until = EXCLUDED.locked_until,
                     expires_at = EXCLUDED.expires_at
                 -- take over only records that expired, whose owner died mid-request, or whose
                 -- request failed on our side and now comes again unchanged
                 WHERE idempotency_keys.expires_at < now()
                    OR (idempotency_keys.state = 'in_progress' AND idempotency_keys.locked_until < now())
                    OR (idempotency_keys.state = 'failed'
                        AND idempotency_keys.request_hash = EXCLUDED.request_hash)
               RETURNING (xmax = 0) AS inserted""",
            scope, key, operation, request_hash, float(IN_PROGRESS_LOCK_SECS), float(KEY_RETENTION_SECS),
        )
        if record is not None:
            return None
        existing = await conn.fetchrow(
            """SELECT operation, request_hash, state, response_status, response_body
               FROM idempotency_keys WHERE scope = $1 AND key = $2""",
            scope, key,
        )
    if existing is None:  # deleted between the two statements: the caller may retry the claim
        return StoredKey(operation, request_hash, "in_progress", None, None)
    return StoredKey(**dict(existing))


async def complete_key(pool: asyncpg.Pool, *, scope: str, key: str, status: int, body: bytes) -> None:
    """Store the response - while the claim is still ours (locked): once it lapsed, another
    request may hold the key."""
    await pool.execute(
        """UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4
           WHERE scope = $1 AND key = $2 AND state = 'in_progress' AND locked_until > now()""",
        scope, key, status, body,
    )


async def reopen_key(pool: asyncpg.Pool, *, scope: str, key: str) -> None:
    """A claim whose request failed on our side (5xx): the same request may run again under the
    key, but the key stays bound to that request (its hash) - a different request reusing it is
    still refused, since what the first one created is named after the key. Only while the claim
    is still ours (locked): once it lapsed, another request may hold the key."""
    await pool.execute(
        """UPDATE idempotency_keys SET state = 'failed', locked_until = now()
           WHERE scope = $1 AND key = $2 AND state = 'in_progress' AND locked_until > now()""",
        scope, key,
    )


async def purge_expired(pool: asyncpg.Pool) -> int:
    result = await pool.execute("DELETE FROM idempotency_keys WHERE expires_at < now()")
    return int(result.split()[-1])

"""SQL for `email_outbox`: e-mails queued in the transaction that caused them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

_RETRY_BASE_SECS = 30
_RETRY_MAX_SECS = 3600


@dataclass(frozen=True)
class QueuedEmail:
    id: uuid.UUID
    to_address: str
    subject: str
    body_text: str
    attempts: int


async def enqueue(
    conn: asyncpg.Connection, *, to_address: str, template: str, locale: str, subject: str, body_text: str
) -> uuid.UUID:
    email_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO email_outbox (to_address, template, locale, subject, body_text)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        to_address, template, locale, subject, body_text,
    )
    return email_id


async def claim_due(conn: asyncpg.Connection, limit: int) -> list[QueuedEmail]:
    """Due e-mails, locked for this transaction; SKIP LOCKED lets every gateway run a sender."""
    rows = await conn.fetch(
        """SELECT id, to_address, subject, body_text, attempts FROM email_outbox
           WHERE sent_at IS NULL AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [QueuedEmail(**dict(row)) for row in rows]


async def mark_sent(conn: asyncpg.Connection, email_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE email_outbox SET sent_at = now(), body_text = '', attempts = attempts + 1 WHERE id = $1",
        email_id,
    )


async def mark_failed(conn: asyncpg.Connection, email_id: uuid.UUID, attempts: int, error: str) -> None:
    # Exponential backoff, capped: a mail server outage delays mail, it does not lose it.
    delay = min(_RETRY_BASE_SECS * 2 ** attempts, _RETRY_MAX_SECS)
    await conn.execute(
        """UPDATE email_outbox SET attempts = attempts + 1, last_error = $2,
                  next_attempt_at = now() + make_interval(secs => $3)
           WHERE id = $1""",
        email_id, error[:500], float(delay),
    )

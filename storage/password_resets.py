"""SQL for password reset requests and single-use reset tokens."""

from __future__ import annotations

import uuid

import asyncpg


async def record_request(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> None:
    await conn.execute("INSERT INTO password_reset_requests (email) VALUES ($1)", email)


async def take_requests(conn: asyncpg.Connection, limit: int) -> list[str]:
    """Remove and return up to `limit` pending requests (the caller's transaction owns them)."""
    rows = await conn.fetch(
        """DELETE FROM password_reset_requests WHERE id IN (
               SELECT id FROM password_reset_requests ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING email""",
        limit,
    )
    return [row["email"] for row in rows]


async def create_token(conn: asyncpg.Connection, *, token_hash: bytes, user_id: uuid.UUID, ttl_secs: int) -> None:
    await conn.execute(
        """INSERT INTO password_reset_tokens (token_hash, user_id, expires_at)
           VALUES ($1, $2, now() + make_interval(secs => $3))""",
        token_hash, user_id, float(ttl_secs),
    )


async def token_owner(conn: asyncpg.Connection | asyncpg.Pool, token_hash: bytes) -> uuid.UUID | None:
    """The user of a token that is still usable (unused, unexpired), without spending it."""
    user_id: uuid.UUID | None = await conn.fetchval(
        """SELECT user_id FROM password_reset_tokens
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()""",
        token_hash,
    )
    return user_id


async def use_token(conn: asyncpg.Connection, token_hash: bytes) -> uuid.UUID | None:
    """Spend a valid token; returns its user, or None if unknown, used or expired. Atomic."""
    user_id: uuid.UUID | None = await conn.fetchval(
        """UPDATE password_reset_tokens SET used_at = now()
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id""",
        token_hash,
    )
    return user_id


async def invalidate_user_tokens(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE password_reset_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id
    )

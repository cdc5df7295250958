"""SQL for `auth_sessions`: one row per login, the family of its rotating refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class SessionRow:
    id: uuid.UUID
    user_id: uuid.UUID
    refresh_jti: uuid.UUID
    generation: int
    created_at: datetime
    last_refreshed_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    user_agent: str
    ip: str | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> SessionRow:
        data = dict(record)
        data["ip"] = str(data["ip"]) if data["ip"] is not None else None
        return cls(**data)


_COLUMNS = (
    "id, user_id, refresh_jti, generation, created_at, last_refreshed_at, expires_at, revoked_at, "
    "revoked_reason, user_agent, ip"
)


async def create_session(
    conn: asyncpg.Connection,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    refresh_jti: uuid.UUID,
    ttl_secs: int,
    user_agent: str,
    ip: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO auth_sessions (id, user_id, refresh_jti, expires_at, user_agent, ip)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6::inet)""",
        session_id, user_id, refresh_jti, float(ttl_secs), user_agent[:512], ip,
    )


async def rotate_refresh(
    conn: asyncpg.Connection, *, session_id: uuid.UUID, presented_jti: uuid.UUID, new_jti: uuid.UUID,
    ttl_secs: int,
) -> bool:
    """Swap the family's current refresh token for a new one. False when `presented_jti` is not the
    current one (already rotated: a replay) or the family is revoked or expired. Atomic, so of two
    concurrent refreshes with the same token exactly one wins."""
    result = await conn.execute(
        """UPDATE auth_sessions
           SET refresh_jti = $3, generation = generation + 1, last_refreshed_at = now(),
               expires_at = now() + make_interval(secs => $4)
           WHERE id = $1 AND refresh_jti = $2 AND revoked_at IS NULL AND expires_at > now()""",
        session_id, presented_jti, new_jti, float(ttl_secs),
    )
    return bool(result == "UPDATE 1")


async def get_session(conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID) -> SessionRow | None:
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM auth_sessions WHERE id = $1", session_id)
    return SessionRow.from_record(record) if record else None


async def revoke_session(conn: asyncpg.Connection, session_id: uuid.UUID, reason: str) -> bool:
    result = await conn.execute(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
        session_id, reason,
    )
    return bool(result == "UPDATE 1")


async def revoke_user_sessions(
    conn: asyncpg.Connection, user_id: uuid.UUID, reason: str, *, keep: uuid.UUID | None = None
) -> list[uuid.UUID]:
    rows = await conn.fetch(
        """UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2
           WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $3 RETURNING id""",
        user_id, reason, keep,
    )
    return [row["id"] for row in rows]


async def list_active_sessions(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> list[SessionRow]:
    records = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM auth_sessions
            WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
            ORDER BY last_refreshed_at DESC""",
        user_id,
    )
    return [SessionRow.from_record(r) for r in records]

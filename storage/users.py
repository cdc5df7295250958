"""SQL for `users`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class UserRow:
    id: uuid.UUID
    email: str
    password_hash: str
    display_name: str
    phone: str | None
    bio: str
    city: str
    locale: str
    roles: frozenset[str]
    status: str
    auth_epoch: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> UserRow:
        data = dict(record)
        data["roles"] = frozenset(data["roles"])
        return cls(**data)


_COLUMNS = (
    "id, email, password_hash, display_name, phone, bio, city, locale, roles, status, auth_epoch, "
    "created_at, updated_at"
)
PROFILE_FIELDS = frozenset({"display_name", "phone", "bio", "city", "locale"})


async def insert_user(
    conn: asyncpg.Connection, *, email: str, password_hash: str, display_name: str, roles: frozenset[str]
) -> UserRow | None:
    """The new user, or None when the e-mail is taken."""
    record = await conn.fetchrow(
        f"""INSERT INTO users (email, password_hash, display_name, roles)
            VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING RETURNING {_COLUMNS}""",
        email, password_hash, display_name, sorted(roles),
    )
    return UserRow.from_record(record) if record else None


async def get_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> UserRow | None:
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    return UserRow.from_record(record) if record else None


async def get_user_by_email(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> UserRow | None:
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE email = $1", email)
    return UserRow.from_record(record) if record else None


async def update_profile(conn: asyncpg.Connection, user_id: uuid.UUID, changes: dict[str, Any]) -> UserRow | None:
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    if not changes:
        return await get_user(conn, user_id)
    # Column names come from the fixed PROFILE_FIELDS set above, never from input.
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=2))
    record = await conn.fetchrow(
        f"UPDATE users SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
        user_id, *changes.values(),
    )
    return UserRow.from_record(record) if record else None


async def set_roles(conn: asyncpg.Connection, user_id: uuid.UUID, roles: frozenset[str]) -> UserRow | None:
    record = await conn.fetchrow(
        # The epoch moves only when the roles really change: re-sending the same set keeps logins.
        f"""UPDATE users SET auth_epoch = auth_epoch + (roles IS DISTINCT FROM $2::text[])::int,
                             roles = $2, updated_at = now()
            WHERE id = $1 RETURNING {_COLUMNS}""",
        user_id, sorted(roles),
    )
    return UserRow.from_record(record) if record else None


async def set_status(conn: asyncpg.Connection, user_id: uuid.UUID, status: str) -> UserRow | None:
    record = await conn.fetchrow(
        f"""UPDATE users SET auth_epoch = auth_epoch + (status IS DISTINCT FROM $2)::int,
                             status = $2, updated_at = now()
            WHERE id = $1 RETURNING {_COLUMNS}""",
        user_id, status,
    )
    return UserRow.from_record(record) if record else None


async def set_password_hash(
    conn: asyncpg.Connection, user_id: uuid.UUID, password_hash: str, *, bump_epoch: bool
) -> None:
    await conn.execute(
        """UPDATE users SET password_hash = $2, auth_epoch = auth_epoch + $3::int, updated_at = now()
           WHERE id = $1""",
        user_id, password_hash, 1 if bump_epoch else 0,
    )


async def get_auth_state(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> tuple[str, int] | None:
    record = await conn.fetchrow("SELECT status, auth_epoch FROM users WHERE id = $1", user_id)
    return (record["status"], record["auth_epoch"]) if record else None


async def staff_roles(conn: asyncpg.Connection | asyncpg.Pool,
                      user_ids: list[uuid.UUID]) -> dict[uuid.UUID, frozenset[str]]:
    """The roles active users hold now (banned users hold none): what shard actors check a
    command's claimed moderator/admin roles against."""
    rows = await conn.fetch(
        "SELECT id, roles FROM users WHERE id = ANY($1::uuid[]) AND status = 'active'", user_ids
    )
    return {row["id"]: frozenset(row["roles"]) for row in rows}

"""ml_models: every trained model version, its metrics and which one is promoted."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from storage.db import transaction

_COLUMNS = """id, kind, version, status, artifact_uri, artifact_sha256, artifact_bytes, metrics, training, decision,
              trained_at, promoted_at"""


async def promoted(db: asyncpg.Pool | asyncpg.Connection, kind: str) -> dict[str, Any] | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM ml_models WHERE kind = $1 AND status = 'promoted'", kind)
    return dict(row) if row else None


async def promoted_version(db: asyncpg.Pool | asyncpg.Connection, kind: str) -> int | None:
    """What a serving replica polls: cheap, one index lookup."""
    version: int | None = await db.fetchval(
        "SELECT version FROM ml_models WHERE kind = $1 AND status = 'promoted'", kind)
    return version


async def versions(db: asyncpg.Pool | asyncpg.Connection, kind: str) -> list[dict[str, Any]]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM ml_models WHERE kind = $1 ORDER BY version", kind)
    return [dict(row) for row in rows]


async def record(pool: asyncpg.Pool, *, kind: str, artifact_uri: str, artifact_sha256: str, artifact_bytes: int,
                 metrics: dict[str, Any], training: dict[str, Any], decision: str, promote: bool) -> int:
    """Store a trained model as the kind's next version and return the version; when `promote`,
    it replaces the promoted one in the same commit. Two trainings finishing at once take
    versions one after the other (the lock), never the same one."""
    model_id = uuid.uuid4()
    async with transaction(pool, "record_ml_model") as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('ml_models:' || $1))", kind)
        version: int = await conn.fetchval(
            "SELECT coalesce(max(version), 0) + 1 FROM ml_models WHERE kind = $1", kind)
        if promote:
            await conn.execute("UPDATE ml_models SET status = 'retired' WHERE kind = $1 AND status = 'promoted'", kind)
        await conn.execute(
            f"""INSERT INTO ml_models ({_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(), CASE WHEN $11 THEN now() END)""",
            model_id, kind, version, "promoted" if promote else "rejected", artifact_uri, artifact_sha256,
            artifact_bytes, metrics, training, decision, promote)
    return version

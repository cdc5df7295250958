"""The migration runner: numbered SQL files applied once each, in order, under an advisory lock.

- Two processes starting at once (two gateways, a Helm hook and a pod) serialise on the lock; the
  second finds everything applied and does nothing.
- Each file runs in its own transaction together with its `schema_migrations` row, so a failure
  leaves no half-applied file behind.
- A file edited after it was applied is refused (checksum), because the databases that already
  ran it would silently differ from new ones."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# Arbitrary but fixed: pg_advisory_lock key owned by the migration runner.
MIGRATION_LOCK_KEY = 0x5348_4D49  # "SHMI"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_case.sql")
        sql = path.read_text(encoding="utf-8")
        if not sql.lstrip().startswith("--"):
            raise MigrationError(f"{path.name}: a migration opens with a comment saying why")
        migrations.append(Migration(int(match.group(1)), match.group(2), sql))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(dsn: str, directory: Path) -> list[Migration]:
    """Apply pending migrations; returns those applied by this call."""
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            return await _apply_pending(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    await conn.execute(_CREATE_TABLE)
    applied = {
        row["version"]: row["checksum"]
        for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
    }
    done = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was edited after it was "
                    "applied; add a new migration instead"
                )
            continue
        log.info("applying migration %04d_%s", migration.version, migration.name)
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.checksum,
            )
        done.append(migration)
    return done

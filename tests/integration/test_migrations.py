"""The migration runner on a real Postgres: fresh, re-run, concurrent starts, edited files."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from sharehub.config import REPO_ROOT
from storage.migrate import MigrationError, load_migrations, migrate

MIGRATIONS = REPO_ROOT / "migrations"


def test_every_migration_file_is_numbered_and_says_why() -> None:
    migrations = load_migrations(MIGRATIONS)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


async def test_fresh_database_then_rerun_is_a_no_op(fresh_db: str) -> None:
    applied = await migrate(fresh_db, MIGRATIONS)
    assert [m.version for m in applied] == [m.version for m in load_migrations(MIGRATIONS)]
    assert await migrate(fresh_db, MIGRATIONS) == []
    conn = await asyncpg.connect(fresh_db)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [r["checksum"] for r in rows] == [m.checksum for m in load_migrations(MIGRATIONS)]
        assert await conn.fetchval("SELECT to_regclass('users') IS NOT NULL")
    finally:
        await conn.close()


async def test_concurrent_starts_apply_each_migration_once(fresh_db: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_db, MIGRATIONS) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(load_migrations(MIGRATIONS))]


async def test_an_edited_applied_migration_is_refused(fresh_db: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    await migrate(fresh_db, copy)
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited later\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrate(fresh_db, copy)


async def test_a_failing_migration_leaves_nothing_behind(fresh_db: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    bad = copy / "9999_broken.sql"
    bad.write_text("-- broken on purpose\nCREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrate(fresh_db, copy)
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9999") == 0
    finally:
        await conn.close()


def test_files_without_a_why_comment_or_number_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_x.sql").write_text("CREATE TABLE x (id int);")
    with pytest.raises(MigrationError, match="comment"):
        load_migrations(tmp_path)
    (tmp_path / "0001_x.sql").unlink()
    (tmp_path / "1_x.sql").write_text("-- why\n")
    with pytest.raises(MigrationError, match="NNNN"):
        load_migrations(tmp_path)

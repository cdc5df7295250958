"""The `sharehub` command against the session's services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import asyncpg

from sharehub.config import Settings
from sharehub.platform import Platform
from sharehub.security.passwords import verify_password
from storage.users import get_user_by_email
from tests.helpers import STRONG_PASSWORD, unique_email


def _sharehub(
    settings: Settings, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or "",
           "NATS_URL": settings.nats_url or "", **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "sharehub", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_help_lists_the_subcommands() -> None:
    out = subprocess.run([sys.executable, "-m", "sharehub", "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "gateway", "migrate", "user", "seed", "keys"):
        assert command in out.stdout


async def test_user_create_with_roles(migrated: Settings, platform: Platform) -> None:
    email = unique_email("cli")
    result = _sharehub(migrated, "user", "create", "--email", email.upper(), "--password", STRONG_PASSWORD,
                       "--role", "moderator", "--display-name", "Модератор")
    assert result.returncode == 0, result.stderr
    user = await get_user_by_email(platform.db, email)
    assert user is not None and user.roles == frozenset({"user", "moderator"})
    again = _sharehub(migrated, "user", "create", "--email", email, "--password", STRONG_PASSWORD)
    assert again.returncode == 1 and "email_taken" in again.stderr
    weak = _sharehub(migrated, "user", "create", "--email", unique_email(), "--password", "password1")
    assert weak.returncode == 1 and "password_too_common" in weak.stderr


def test_migrate_is_idempotent(migrated: Settings) -> None:
    result = _sharehub(migrated, "migrate")
    assert result.returncode == 0, result.stderr
    assert "applied 0 migration(s)" in result.stdout


def test_keys_rotate_adds_a_key(migrated: Settings, tmp_path: Path) -> None:
    env = {"SHAREHUB_JWT_KEYS_DIR": str(tmp_path)}
    assert _sharehub(migrated, "keys", "rotate", extra_env=env).returncode == 0
    assert _sharehub(migrated, "keys", "rotate", extra_env=env).returncode == 0
    listed = _sharehub(migrated, "keys", "list", extra_env=env)
    assert len(listed.stdout.split()) == 2
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in tmp_path.glob("*.pem"))


async def test_sharehub_run_seeds_a_given_database_only_with_demo(settings: Settings, fresh_db: str,
                                                                  tmp_path: Path) -> None:
    """`sharehub run` seeds demo accounts (printed passwords) and the demo market into the embedded
    database; into a database given in DATABASE_URL only with `--demo`."""
    from sharehub.cli import build_parser
    from sharehub.supervisor import prepare_database, seeds_demo

    assert build_parser().parse_args(["run"]).demo is False
    assert build_parser().parse_args(["run", "--demo"]).demo is True
    assert seeds_demo(replace(settings, database_url=None), demo=False)  # embedded: the settings name no database
    given = replace(settings, database_url=fresh_db, data_dir=tmp_path)
    db = await asyncpg.connect(fresh_db)
    try:
        assert await prepare_database(given, demo=seeds_demo(given, demo=False)) == []
        assert await db.fetchval("SELECT count(*) FROM schema_migrations") > 0  # migrated all the same
        empty = await db.fetchrow("SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM listings) "
                                  "AS listings, (SELECT count(*) FROM rentals) AS rentals")
        assert empty is not None and dict(empty) == {"users": 0, "listings": 0, "rentals": 0}
        assert not (tmp_path / "demo-credentials.json").exists()
        # Another database's demo accounts were kept here before (an embedded `make run`).
        elsewhere = [{"email": "admin@sharehub.local", "password": "demo-of-another-database", "roles": "admin"}]
        (tmp_path / "demo-credentials.json").write_text(json.dumps(elsewhere))

        accounts = await prepare_database(given, demo=seeds_demo(given, demo=True))
        assert {a["email"] for a in accounts} == {"admin@sharehub.local", "moderator@sharehub.local"}
        assert "demo-of-another-database" not in {a["password"] for a in accounts}
        for account in accounts:  # what is printed logs in to this database
            hashed = await db.fetchval("SELECT password_hash FROM users WHERE email = $1", account["email"])
            assert verify_password(hashed, account["password"])
        # Both databases' passwords are kept; a later start shows this database's again.
        kept = json.loads((tmp_path / "demo-credentials.json").read_text())
        assert elsewhere[0] in kept and all(a in kept for a in accounts)
        assert await prepare_database(given, demo=True) == accounts
        admin = await db.fetchrow("SELECT roles FROM users WHERE email = 'admin@sharehub.local'")
        assert admin is not None and set(admin["roles"]) >= {"admin", "moderator"}
        assert await db.fetchval("SELECT count(*) FROM users") > len(accounts)
        assert await db.fetchval("SELECT count(*) FROM listings") > 0
        assert await db.fetchval("SELECT count(*) FROM rentals") > 0
    finally:
        await db.close()

"""The `sharehub` command against the session's services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sharehub.config import Settings
from sharehub.platform import Platform
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

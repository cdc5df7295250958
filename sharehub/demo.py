"""Demo accounts for a fresh `make run`: an admin and a moderator with generated passwords, kept
in `.sharehub/demo-credentials.json` (mode 0600) and printed at every start.

The file may hold the accounts of several databases (the embedded one, and one given with
`sharehub run --demo`): a stored password is shown for a database only if it is that database's -
checked against the account's hash there - and a database without the accounts gets its own."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

from sharehub import accounts
from sharehub.errors import ApiError
from sharehub.platform import Platform
from sharehub.security.passwords import verify_password
from storage import users as user_store

DEMO_ACCOUNTS = (
    ("admin@sharehub.local", "Администратор ShareHub", frozenset({"admin", "moderator"})),
    ("moderator@sharehub.local", "Модератор ShareHub", frozenset({"moderator"})),
)
Credentials = list[dict[str, str]]


def _credentials_path(data_dir: Path) -> Path:
    return data_dir / "demo-credentials.json"


def _load(data_dir: Path) -> Credentials:
    path = _credentials_path(data_dir)
    stored: Credentials = json.loads(path.read_text()) if path.exists() else []
    return stored


async def _known_password(platform: Platform, email: str, stored: Credentials) -> dict[str, str] | None:
    """The stored credentials of this database's account `email`, if any of those kept are its."""
    user = await user_store.get_user_by_email(platform.db, email)
    if user is None:
        return None
    for entry in stored:
        if entry["email"] == email and await asyncio.to_thread(verify_password, user.password_hash, entry["password"]):
            return entry
    return None


async def ensure_demo_accounts(platform: Platform, data_dir: Path) -> Credentials:
    stored = _load(data_dir)
    shown, created = [], []
    for email, name, roles in DEMO_ACCOUNTS:
        known = await _known_password(platform, email, stored)
        if known is not None:
            shown.append(known)
            continue
        password = "demo-" + secrets.token_urlsafe(12)
        try:
            await accounts.create_user(platform, email=email, password=password, display_name=name, roles=roles)
        except ApiError as exc:
            if exc.code != "email_taken":
                raise
            continue  # made earlier, its password not kept here: leave that account alone
        entry = {"email": email, "password": password, "roles": ",".join(sorted(roles))}
        created.append(entry)
        shown.append(entry)
    if created:
        path = _credentials_path(data_dir)
        path.write_text(json.dumps(stored + created, indent=2, ensure_ascii=False))
        path.chmod(0o600)
    return shown

"""Demo accounts for a fresh `make run`: an admin and a moderator with generated passwords, kept
in `.sharehub/demo-credentials.json` (mode 0600) and printed at every start."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from sharehub import accounts
from sharehub.errors import ApiError
from sharehub.platform import Platform

DEMO_ACCOUNTS = (
    ("admin@sharehub.local", "Администратор ShareHub", frozenset({"admin", "moderator"})),
    ("moderator@sharehub.local", "Модератор ShareHub", frozenset({"moderator"})),
)


def _credentials_path(data_dir: Path) -> Path:
    return data_dir / "demo-credentials.json"


def load_demo_credentials(data_dir: Path) -> list[dict[str, str]]:
    path = _credentials_path(data_dir)
    return json.loads(path.read_text()) if path.exists() else []


async def ensure_demo_accounts(platform: Platform, data_dir: Path) -> list[dict[str, str]]:
    existing = load_demo_credentials(data_dir)
    if existing:
        return existing
    created = []
    for email, name, roles in DEMO_ACCOUNTS:
        password = "demo-" + secrets.token_urlsafe(12)
        try:
            await accounts.create_user(platform, email=email, password=password, display_name=name, roles=roles)
        except ApiError as exc:
            if exc.code != "email_taken":
                raise
            continue  # made earlier (credentials file deleted): leave that account alone
        created.append({"email": email, "password": password, "roles": ",".join(sorted(roles))})
    path = _credentials_path(data_dir)
    path.write_text(json.dumps(created, indent=2, ensure_ascii=False))
    path.chmod(0o600)
    return created

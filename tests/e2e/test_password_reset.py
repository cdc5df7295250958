"""Password reset: no enumeration, a real e-mail over SMTP, single-use tokens, all logins ended."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from sharehub.mailer import send_due
from sharehub.password_reset import process_requests
from sharehub.platform import Platform
from tests.helpers import login, register_and_login, unique_email

Client = TestClient[Any, Any]


def _messages(mail_dir: Path) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        found.append(message)
    return found


async def _mail_to(
    platform: Platform, mail_dir: Path, address: str, timeout_secs: float = 15
) -> email.message.EmailMessage:
    """Run the background steps (another gateway may run them too) and wait for the message."""
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        await process_requests(platform)
        await send_due(platform)
        for message in await asyncio.to_thread(_messages, mail_dir):
            if message["To"] == address:
                return message
        await asyncio.sleep(0.2)
    raise AssertionError(f"no e-mail to {address}")


def _token(message: email.message.EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(r"reset-password\?token=([A-Za-z0-9_\-%]+)", body.get_content())
    assert match, body.get_content()
    return match.group(1)


async def test_known_and_unknown_addresses_get_the_same_answer(client: Client, platform: Platform,
                                                               mail_dir: Path) -> None:
    user = await register_and_login(client)
    known = await client.post("/api/v1/auth/password-reset", json={"email": user.email})
    unknown_address = unique_email()
    unknown = await client.post("/api/v1/auth/password-reset", json={"email": unknown_address})
    assert known.status == unknown.status == 202
    assert await known.json() == await unknown.json()
    message = await _mail_to(platform, mail_dir, user.email)
    assert message["Subject"] == "Сброс пароля ShareHub"  # the account's locale is ru
    await process_requests(platform)
    await send_due(platform)
    assert not any(m["To"] == unknown_address for m in await asyncio.to_thread(_messages, mail_dir))


async def test_reset_sets_the_password_ends_logins_and_spends_the_token(client: Client, platform: Platform,
                                                                        mail_dir: Path) -> None:
    user = await register_and_login(client)
    await client.patch("/api/v1/users/me", headers=user.auth, json={"locale": "en"})
    assert (await client.post("/api/v1/auth/password-reset", json={"email": user.email})).status == 202
    message = await _mail_to(platform, mail_dir, user.email)
    assert message["Subject"] == "Reset your ShareHub password"
    token = _token(message)

    bad = await client.post("/api/v1/auth/password-reset/confirm", json={"token": "nope", "new_password": "x" * 20})
    assert bad.status == 400 and (await bad.json())["code"] == "invalid_reset_token"
    weak = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "qwerty123"})
    assert weak.status == 422 and (await weak.json())["errors"][0]["path"] == "/new_password"

    new_password = "Новый пароль после сброса"
    done = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password})
    assert done.status == 204
    assert (await client.get("/api/v1/users/me", headers=user.auth)).status == 401
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})).status == 401
    await login(client, user.email, new_password)
    again = await client.post("/api/v1/auth/password-reset/confirm",
                              json={"token": token, "new_password": "Ещё один новый пароль"})
    assert again.status == 400


async def test_undeliverable_mail_is_retried_not_lost(client: Client, platform: Platform, mail_dir: Path) -> None:
    user = await register_and_login(client)
    dead_smtp = replace(platform, settings=replace(platform.settings, smtp_url="smtp://127.0.0.1:1"))
    await client.post("/api/v1/auth/password-reset", json={"email": user.email})
    await process_requests(platform)
    queued = await platform.db.fetchrow(
        "SELECT id, attempts FROM email_outbox WHERE to_address = $1 AND sent_at IS NULL", user.email)
    if queued is None:  # another worker delivered it first; nothing to retry in this run
        await _mail_to(platform, mail_dir, user.email)
        return
    await platform.db.execute("UPDATE email_outbox SET next_attempt_at = now() WHERE id = $1", queued["id"])
    await send_due(dead_smtp)
    row = await platform.db.fetchrow(
        "SELECT attempts, sent_at, last_error, next_attempt_at > now() AS later FROM email_outbox WHERE id = $1",
        queued["id"])
    assert row is not None
    if row["sent_at"] is None:
        assert row["attempts"] == queued["attempts"] + 1 and row["last_error"] and row["later"]
        await platform.db.execute("UPDATE email_outbox SET next_attempt_at = now() WHERE id = $1", queued["id"])
    message = await _mail_to(platform, mail_dir, user.email)
    assert _token(message)
    sent = await platform.db.fetchrow("SELECT sent_at, body_text FROM email_outbox WHERE id = $1", queued["id"])
    assert sent is not None and sent["sent_at"] is not None
    assert sent["body_text"] == ""  # the link does not stay in the database


async def test_reset_requests_are_rate_limited_per_client(platform: Platform) -> None:
    from aiohttp.test_utils import TestServer

    from gateway.app import build_app

    settings = replace(platform.settings, trust_forwarded_for=True, password_resets_per_ip_per_hour=20)
    async with TestClient(TestServer(build_app(replace(platform, settings=settings)))) as client:
        ip = {"X-Forwarded-For": "198.51.100.77"}
        statuses = [
            (await client.post("/api/v1/auth/password-reset", json={"email": unique_email()}, headers=ip)).status
            for _ in range(21)
        ]
        assert statuses[:20] == [202] * 20 and statuses[20] == 429


async def test_a_parallel_burst_of_reset_requests_gets_exactly_the_limit(platform: Platform) -> None:
    """The slot is taken before the request is recorded: a check-then-record limiter lets a
    parallel burst through."""
    from aiohttp.test_utils import TestServer

    from gateway.app import build_app

    settings = replace(platform.settings, trust_forwarded_for=True, password_resets_per_ip_per_hour=5)
    async with TestClient(TestServer(build_app(replace(platform, settings=settings)))) as client:
        ip = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 200 + 20}"}

        async def ask() -> int:
            resp = await client.post("/api/v1/auth/password-reset", json={"email": unique_email()}, headers=ip)
            return resp.status

        statuses = await asyncio.gather(*(ask() for _ in range(30)))
    assert sorted(statuses) == [202] * 5 + [429] * 25

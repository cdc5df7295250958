"""Small API client helpers for the end-to-end tests."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import build_app
from sharehub import accounts
from sharehub.platform import Platform

STRONG_PASSWORD = "Лето в Сочи 2026!"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.ru"


@dataclass
class LoggedIn:
    user_id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register_and_login(
    client: TestClient[Any, Any], *, password: str = STRONG_PASSWORD, name: str = "Иван Петров"
) -> LoggedIn:
    email = unique_email()
    resp = await client.post("/api/v1/auth/register",
                             json={"email": email, "password": password, "display_name": name})
    assert resp.status == 201, await resp.text()
    user_id = (await resp.json())["id"]
    return await login(client, email, password, user_id)


async def login(client: TestClient[Any, Any], email: str, password: str, user_id: str = "") -> LoggedIn:
    resp = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return LoggedIn(user_id, email, password, body["access_token"], body["refresh_token"])


async def make_user_with_roles(
    client: TestClient[Any, Any], platform: Platform, roles: set[str]
) -> LoggedIn:
    email = unique_email("staff")
    user = await accounts.create_user(
        platform, email=email, password=STRONG_PASSWORD, display_name="Сотрудник", roles=frozenset(roles)
    )
    return await login(client, email, STRONG_PASSWORD, str(user.id))


DRILL = {
    "title": "Перфоратор Bosch GBH 2-26",
    "description": "Мощный перфоратор с тремя режимами, в кейсе, с набором буров.",
    "category_id": "power-tools",
    "city": "Москва",
    "lat": 55.7558,
    "lon": 37.6173,
    "rental_unit": "day",
    "price_per_unit": 70000,
    "deposit": 500000,
    "cancellation_policy": "moderate",
    "discounts": [{"min_units": 7, "percent": 20}, {"min_units": 3, "percent": 10}],
}


async def published_listing(
    client: TestClient[Any, Any], platform: Platform, owner: LoggedIn | None = None, **overrides: Any
) -> tuple[LoggedIn, dict[str, Any]]:
    """A listing created by `owner` (a new user by default) and approved by a moderator."""
    owner = owner or await register_and_login(client)
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    resp = await client.post("/api/v1/listings", json={**DRILL, **overrides}, headers=owner.auth)
    assert resp.status == 201, await resp.text()
    listing_id = (await resp.json())["id"]
    assert (await client.post(f"/api/v1/listings/{listing_id}/submit", headers=owner.auth)).status == 200
    resp = await client.post(f"/api/v1/moderation/listings/{listing_id}/approve", headers=moderator.auth)
    assert resp.status == 200, await resp.text()
    listing: dict[str, Any] = await resp.json()
    return owner, listing


@contextlib.asynccontextmanager
async def gateway_with(platform: Platform, **settings: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """Another gateway on the session's services, with some settings changed (a short entity
    deadline, lower caps...)."""
    changed = dataclasses.replace(platform, settings=dataclasses.replace(platform.settings, **settings))
    async with TestClient(TestServer(build_app(changed))) as client:
        yield client

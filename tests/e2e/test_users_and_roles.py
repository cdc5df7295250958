"""Profiles, public profiles, and role-based access (RBAC) enforced per route."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.app import ROUTE_TABLES
from sharehub.platform import Platform
from tests.helpers import login, make_user_with_roles, register_and_login

Client = TestClient[Any, Any]


async def test_profile_patch_changes_only_sent_fields(client: Client) -> None:
    user = await register_and_login(client)
    resp = await client.patch("/api/v1/users/me", headers=user.auth,
                              json={"city": "Казань", "phone": "+79161234567", "locale": "en"})
    assert resp.status == 200
    body = await resp.json()
    assert (body["city"], body["phone"], body["locale"], body["display_name"]) == (
        "Казань", "+79161234567", "en", "Иван Петров")
    cleared = await (await client.patch("/api/v1/users/me", headers=user.auth, json={"phone": None})).json()
    assert cleared["phone"] is None and cleared["city"] == "Казань"


async def test_profile_patch_rejects_unknown_fields_nulls_and_bad_values(client: Client) -> None:
    user = await register_and_login(client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"roles": ["admin"]}, "/roles"),
        ({"display_name": None}, "/display_name"),
        ({"phone": "8-916-123"}, "/phone"),
        ({"locale": "de"}, "/locale"),
        ({"bio": 5}, "/bio"),
    ]
    for payload, path in cases:
        resp = await client.patch("/api/v1/users/me", headers=user.auth, json=payload)
        assert resp.status == 422, payload
        assert [e["path"] for e in (await resp.json())["errors"]] == [path]
    me = await (await client.get("/api/v1/users/me", headers=user.auth)).json()
    assert me["roles"] == ["user"] and me["display_name"] == "Иван Петров"


async def test_public_profile_hides_contact_details(client: Client) -> None:
    user = await register_and_login(client)
    await client.patch("/api/v1/users/me", headers=user.auth, json={"phone": "+79161234567"})
    resp = await client.get(f"/api/v1/users/{user.user_id}")
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"id", "display_name", "bio", "city", "is_owner", "created_at"}
    assert (await client.get(f"/api/v1/users/{uuid.uuid4()}")).status == 404
    bad = await client.get("/api/v1/users/not-a-uuid")
    assert bad.status == 422 and (await bad.json())["errors"][0]["path"] == "/user_id"


async def test_only_admins_change_roles_and_old_tokens_stop_at_once(client: Client, platform: Platform) -> None:
    admin = await make_user_with_roles(client, platform, {"admin"})
    moderator = await make_user_with_roles(client, platform, {"moderator"})
    target = await register_and_login(client)
    url = f"/api/v1/admin/users/{target.user_id}/roles"
    for caller in (target, moderator):
        resp = await client.put(url, headers=caller.auth, json={"roles": ["moderator"]})
        assert resp.status == 403
        assert (await resp.json())["code"] == "forbidden"
    assert (await client.put(url, json={"roles": ["moderator"]})).status == 401
    resp = await client.put(url, headers=admin.auth, json={"roles": ["moderator"]})
    assert resp.status == 200
    assert (await resp.json())["roles"] == ["moderator", "user"]
    # The token issued under the old roles is refused; a fresh login carries the new ones.
    assert (await client.get("/api/v1/users/me", headers=target.auth)).status == 401
    fresh = await login(client, target.email, target.password)
    assert (await client.get(f"/api/v1/admin/users/{admin.user_id}", headers=fresh.auth)).status == 200
    assert (await client.put(f"/api/v1/admin/users/{uuid.uuid4()}/roles", headers=admin.auth,
                             json={"roles": []})).status == 404


async def test_admin_cannot_drop_own_admin_role(client: Client, platform: Platform) -> None:
    admin = await make_user_with_roles(client, platform, {"admin"})
    resp = await client.put(f"/api/v1/admin/users/{admin.user_id}/roles", headers=admin.auth, json={"roles": []})
    assert resp.status == 403


async def test_ban_ends_every_login_and_blocks_new_ones(client: Client, platform: Platform) -> None:
    admin = await make_user_with_roles(client, platform, {"admin"})
    target = await register_and_login(client)
    resp = await client.put(f"/api/v1/admin/users/{target.user_id}/status", headers=admin.auth,
                            json={"status": "banned"})
    assert resp.status == 200
    assert (await client.get("/api/v1/users/me", headers=target.auth)).status == 401
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": target.refresh_token})).status == 401
    relogin = await client.post("/api/v1/auth/login", json={"email": target.email, "password": target.password})
    assert relogin.status == 403
    assert (await relogin.json())["code"] == "account_suspended"
    assert (await client.get(f"/api/v1/users/{target.user_id}")).status == 404
    await client.put(f"/api/v1/admin/users/{target.user_id}/status", headers=admin.auth, json={"status": "active"})
    await login(client, target.email, target.password)


async def test_admin_creates_users_with_roles(client: Client, platform: Platform) -> None:
    admin = await make_user_with_roles(client, platform, {"admin"})
    email = f"mod-{uuid.uuid4().hex[:8]}@example.ru"
    resp = await client.post("/api/v1/admin/users", headers=admin.auth, json={
        "email": email, "password": "Модератор надёжный", "display_name": "Мария", "roles": ["moderator"]})
    assert resp.status == 201
    assert (await resp.json())["roles"] == ["moderator", "user"]


def test_every_route_declares_its_access() -> None:
    for table in ROUTE_TABLES:
        for spec in table.routes:
            assert spec.access.describe() in {"public", "authenticated"} or spec.access.roles
    admin_specs = [s for t in ROUTE_TABLES for s in t.routes if s.path.startswith("/api/v1/admin/")]
    assert admin_specs and all(s.access.roles for s in admin_specs)

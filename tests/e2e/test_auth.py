"""Registration, login, refresh rotation and reuse detection, logout, sessions, password change."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import STRONG_PASSWORD, login, register_and_login, unique_email

Client = TestClient[Any, Any]


async def test_register_normalises_email_and_returns_the_user(client: Client) -> None:
    email = unique_email()
    resp = await client.post("/api/v1/auth/register", json={
        "email": email.upper(), "password": STRONG_PASSWORD, "display_name": "Анна",
    })
    assert resp.status == 201
    body = await resp.json()
    assert body["email"] == email
    assert body["display_name"] == "Анна"
    assert body["roles"] == ["user"]
    assert "password" not in str(body).lower()
    assert resp.headers["Location"] == f"/api/v1/users/{body['id']}"


async def test_duplicate_email_is_409_with_the_problem_shape(client: Client) -> None:
    email = unique_email()
    payload = {"email": email, "password": STRONG_PASSWORD, "display_name": "Олег"}
    assert (await client.post("/api/v1/auth/register", json=payload)).status == 201
    payload["email"] = email.upper()
    resp = await client.post("/api/v1/auth/register", json=payload)
    assert resp.status == 409
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["code"] == "email_taken"
    assert set(problem) >= {"type", "title", "status", "code", "detail", "instance"}


async def test_weak_passwords_are_refused_with_a_field_path(client: Client) -> None:
    cases = {"short": "password_too_short", "password123": "password_too_common",
             "qwertyuiop": "password_too_common", "x" * 129: "password_too_long"}
    for password, code in cases.items():
        resp = await client.post("/api/v1/auth/register", json={
            "email": unique_email(), "password": password, "display_name": "Вера"})
        assert resp.status == 422, password
        problem = await resp.json()
        assert problem["code"] == "validation_failed"
        assert problem["errors"] == [{"path": "/password", "code": code, "message": problem["errors"][0]["message"]}]
    email = unique_email()
    resp = await client.post("/api/v1/auth/register", json={
        "email": email, "password": email, "display_name": "Вера"})
    assert (await resp.json())["errors"][0]["code"] == "password_matches_account"


async def test_login_returns_a_token_pair(client: Client) -> None:
    user = await register_and_login(client)
    resp = await client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    body = await resp.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "refresh_expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert resp.headers["Cache-Control"] == "no-store"
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert (await me.json())["email"] == user.email


async def test_wrong_password_and_unknown_email_look_the_same(client: Client) -> None:
    user = await register_and_login(client)
    wrong = await client.post("/api/v1/auth/login", json={"email": user.email, "password": "not the password"})
    unknown = await client.post("/api/v1/auth/login", json={"email": unique_email(), "password": "whatever"})
    assert wrong.status == unknown.status == 401
    wrong_body, unknown_body = await wrong.json(), await unknown.json()
    for body in (wrong_body, unknown_body):
        body.pop("request_id")
    assert wrong_body == unknown_body
    assert wrong_body["code"] == "invalid_credentials"


async def test_refresh_rotates_and_replay_revokes_the_whole_family(client: Client) -> None:
    user = await register_and_login(client)
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert first.status == 200
    rotated = await first.json()
    assert rotated["refresh_token"] != user.refresh_token
    # Replaying the used token is refused and ends the login: the newest pair dies with it.
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert replay.status == 401
    assert (await replay.json())["code"] == "refresh_token_reused"
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status == 401
    assert (await after.json())["code"] == "session_revoked"
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert me.status == 401
    assert (await me.json())["code"] == "token_revoked"
    # Other logins of the same user are untouched.
    fresh = await login(client, user.email, user.password)
    assert (await client.get("/api/v1/users/me", headers=fresh.auth)).status == 200


async def test_an_access_token_is_not_a_refresh_token(client: Client) -> None:
    user = await register_and_login(client)
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.access_token})
    assert resp.status == 401
    assert (await resp.json())["code"] == "token_wrong_type"
    resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {user.refresh_token}"})
    assert resp.status == 401
    assert (await resp.json())["code"] == "token_wrong_type"


async def test_logout_kills_the_access_token_at_once(client: Client) -> None:
    user = await register_and_login(client)
    assert (await client.get("/api/v1/users/me", headers=user.auth)).status == 200
    assert (await client.post("/api/v1/auth/logout", headers=user.auth)).status == 204
    me = await client.get("/api/v1/users/me", headers=user.auth)
    assert me.status == 401
    assert me.headers["WWW-Authenticate"].startswith("Bearer")
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status == 401


async def test_sessions_can_be_listed_and_ended(client: Client) -> None:
    user = await register_and_login(client)
    other = await login(client, user.email, user.password)
    listing = await (await client.get("/api/v1/auth/sessions", headers=user.auth)).json()
    assert len(listing["items"]) == 2
    assert sum(item["current"] for item in listing["items"]) == 1
    other_id = next(item["id"] for item in listing["items"] if not item["current"])
    assert (await client.delete(f"/api/v1/auth/sessions/{other_id}", headers=user.auth)).status == 204
    assert (await client.get("/api/v1/users/me", headers=other.auth)).status == 401
    # Someone else's session id is just "not found".
    stranger = await register_and_login(client)
    listing = await (await client.get("/api/v1/auth/sessions", headers=stranger.auth)).json()
    resp = await client.delete(f"/api/v1/auth/sessions/{listing['items'][0]['id']}", headers=user.auth)
    assert resp.status == 404


async def test_password_change_ends_other_logins_and_keeps_this_one(client: Client) -> None:
    user = await register_and_login(client)
    other = await login(client, user.email, user.password)
    new_password = "Новый пароль для теста"
    wrong = await client.post("/api/v1/users/me/password", headers=user.auth,
                              json={"current_password": "nope-nope", "new_password": new_password})
    assert wrong.status == 403
    resp = await client.post("/api/v1/users/me/password", headers=user.auth,
                             json={"current_password": user.password, "new_password": new_password})
    assert resp.status == 200
    pair = await resp.json()
    assert (await client.get("/api/v1/users/me", headers=other.auth)).status == 401
    assert (await client.get("/api/v1/users/me", headers=user.auth)).status == 401  # old epoch
    assert (await client.get("/api/v1/users/me",
                             headers={"Authorization": f"Bearer {pair['access_token']}"})).status == 200
    old = await client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    assert old.status == 401
    await login(client, user.email, new_password)


async def test_missing_or_malformed_authorization_is_401(client: Client) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer not.a.jwt"}):
        resp = await client.get("/api/v1/users/me", headers=headers)
        assert resp.status == 401, headers
        assert resp.content_type == "application/problem+json"

"""Gateway conventions: problem+json for every error, validation paths, body limits, security
headers, request ids, CORS, Idempotency-Key, rate limits, probes and metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import build_app
from sharehub.platform import Platform
from tests.helpers import STRONG_PASSWORD, make_user_with_roles, register_and_login, unique_email

Client = TestClient[Any, Any]


async def _problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].startswith("https://sharehub.ru/problems/")
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


async def test_unknown_route_and_wrong_method_are_problems(client: Client) -> None:
    await _problem(await client.get("/api/v1/nothing-here"), 404, "not_found")
    resp = await client.delete("/api/v1/auth/register")
    await _problem(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


async def test_bad_bodies_get_precise_4xx(client: Client) -> None:
    url = "/api/v1/auth/register"
    await _problem(await client.post(url, data=b"{not json", headers={"Content-Type": "application/json"}),
                   400, "malformed_json")
    await _problem(await client.post(url, data=b"email=x", headers={"Content-Type": "text/plain"}),
                   415, "unsupported_media_type")
    big = b'{"email": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    await _problem(await client.post(url, data=big, headers={"Content-Type": "application/json"}),
                   413, "payload_too_large")
    body = await _problem(await client.post(url, json={"email": 5, "extra": True}), 422, "validation_failed")
    paths = {e["path"]: e["code"] for e in body["errors"]}
    assert paths == {"/email": "string_type", "/extra": "extra_forbidden", "/password": "missing",
                     "/display_name": "missing"}
    await _problem(await client.post(url, json=["a list"]), 422, "validation_failed")


async def test_security_headers_and_request_id(client: Client) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    headers = resp.headers
    assert headers["X-Request-ID"] == "trace-123"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Server"] == "sharehub"  # no framework or Python version banner
    forged = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert forged.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_cors_allows_only_listed_origins(client: Client) -> None:
    preflight = {"Origin": "https://app.sharehub.test", "Access-Control-Request-Method": "POST"}
    ok = await client.options("/api/v1/auth/login", headers=preflight)
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.sharehub.test"
    denied = await client.options("/api/v1/auth/login", headers={**preflight, "Origin": "https://evil.test"})
    await _problem(denied, 403, "forbidden")
    simple = await client.get("/healthz", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in simple.headers


async def test_idempotency_key_replays_and_refuses_reuse(client: Client) -> None:
    key = str(uuid.uuid4())
    payload = {"email": unique_email(), "password": STRONG_PASSWORD, "display_name": "Пётр"}
    first = await client.post("/api/v1/auth/register", json=payload, headers={"Idempotency-Key": key})
    second = await client.post("/api/v1/auth/register", json=payload, headers={"Idempotency-Key": key})
    assert first.status == second.status == 201
    assert await first.json() == await second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    other = await client.post("/api/v1/auth/register", json={**payload, "display_name": "Другой"},
                              headers={"Idempotency-Key": key})
    await _problem(other, 422, "idempotency_key_reused")
    await _problem(await client.post("/api/v1/auth/register", json=payload, headers={"Idempotency-Key": "a b"}),
                   400, "invalid_idempotency_key")


async def test_idempotency_keys_are_scoped_per_user(client: Client, platform: Platform) -> None:
    admin_a = await make_user_with_roles(client, platform, {"admin"})
    admin_b = await make_user_with_roles(client, platform, {"admin"})
    key = str(uuid.uuid4())

    def body() -> dict[str, Any]:
        return {"email": unique_email(), "password": STRONG_PASSWORD, "display_name": "Клиент"}

    a = await client.post("/api/v1/admin/users", json=body(), headers={**admin_a.auth, "Idempotency-Key": key})
    b = await client.post("/api/v1/admin/users", json=body(), headers={**admin_b.auth, "Idempotency-Key": key})
    assert a.status == b.status == 201
    assert (await a.json())["id"] != (await b.json())["id"]


async def test_concurrent_duplicate_is_409(client: Client) -> None:
    key = str(uuid.uuid4())
    payload = {"email": unique_email(), "password": STRONG_PASSWORD, "display_name": "Пётр"}
    results = await asyncio.gather(*(
        client.post("/api/v1/auth/register", json=payload, headers={"Idempotency-Key": key}) for _ in range(4)
    ))
    statuses = sorted(r.status for r in results)
    # One does the work; the others either see it in progress (409) or replay its result (201).
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    for resp in results:
        if resp.status == 409:
            await _problem(resp, 409, "idempotency_request_in_progress")
    assert len({(await r.json()).get("id") for r in results if r.status == 201}) == 1


async def test_a_failed_request_is_remembered_for_its_key(client: Client) -> None:
    key = str(uuid.uuid4())
    payload = {"email": unique_email(), "password": "short", "display_name": "Пётр"}
    first = await client.post("/api/v1/auth/register", json=payload, headers={"Idempotency-Key": key})
    again = await client.post("/api/v1/auth/register", json=payload, headers={"Idempotency-Key": key})
    assert first.status == again.status == 422
    assert again.content_type == "application/problem+json"


@pytest.fixture
async def strict_client(platform: Platform) -> AsyncIterator[Client]:
    """An app with tiny limits, trusting X-Forwarded-For so tests can speak from several IPs."""
    settings = replace(platform.settings, login_failures_per_account_per_hour=3,
                       login_failures_per_ip_per_hour=1000, api_requests_per_minute=1000,
                       trust_forwarded_for=True)
    async with TestClient(TestServer(build_app(replace(platform, settings=settings)))) as test_client:
        yield test_client


async def test_failed_logins_are_limited_without_locking_the_owner_out(strict_client: Client) -> None:
    client = strict_client
    email = unique_email()
    await client.post("/api/v1/auth/register", json={"email": email, "password": STRONG_PASSWORD,
                                                     "display_name": "Владелец"})

    def from_ip(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    owner = await client.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD},
                              headers=from_ip("10.0.0.1"))
    assert owner.status == 200
    for _ in range(3):
        bad = await client.post("/api/v1/auth/login", json={"email": email, "password": "guess-guess"},
                                headers=from_ip("203.0.113.9"))
        assert bad.status == 401
    blocked = await client.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD},
                                headers=from_ip("198.51.100.7"))
    body = await _problem(blocked, 429, "rate_limited")
    assert 0 < int(blocked.headers["Retry-After"]) <= 3600
    assert body["retry_after"] == int(blocked.headers["Retry-After"])
    # The owner's usual address is not locked out by the attacker's failures.
    again = await client.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD},
                              headers=from_ip("10.0.0.1"))
    assert again.status == 200


async def test_the_api_has_a_per_client_budget(platform: Platform) -> None:
    settings = replace(platform.settings, api_requests_per_minute=5, trust_forwarded_for=True)
    async with TestClient(TestServer(build_app(replace(platform, settings=settings)))) as client:
        ip = {"X-Forwarded-For": f"192.0.2.{uuid.uuid4().int % 250}"}
        statuses = [(await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=ip)).status for _ in range(7)]
        assert statuses[:5] == [404] * 5
        assert statuses[5:] == [429, 429]
        assert (await client.get("/healthz", headers=ip)).status == 200  # probes are never limited


async def test_readyz_checks_every_dependency(client: Client) -> None:
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert set(body["checks"]) == {"postgres", "redis", "nats", "ray"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_readyz_says_503_when_a_dependency_is_gone(platform: Platform) -> None:
    from redis.asyncio import Redis

    dead_redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    async with TestClient(TestServer(build_app(replace(platform, redis=dead_redis)))) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["checks"]["redis"]["ok"] is False and body["checks"]["postgres"]["ok"] is True
    await dead_redis.aclose()


async def test_metrics_expose_requests_latency_in_flight_and_pool(client: Client) -> None:
    user = await register_and_login(client)
    await client.get("/api/v1/users/me", headers=user.auth)
    text = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="GET",route="/api/v1/users/me",status="200"}' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/users/me"}' in text
    assert "http_requests_in_flight" in text
    assert 'db_pool_connections{state="in_use"}' in text
    assert 'db_transaction_seconds_count{name="login"}' in text


async def test_unexpected_errors_are_500_problems_without_internals(platform: Platform) -> None:
    from aiohttp import web

    from gateway.routing import PUBLIC, RouteTable

    boom = RouteTable()

    @boom.get("/boom", access=PUBLIC)
    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    async with TestClient(TestServer(build_app(platform, extra_tables=[boom]))) as client:
        resp = await client.get("/boom")
        body = await _problem(resp, 500, "internal_error")
        assert "secret" not in await resp.text()
        assert body["detail"] == "Something went wrong on our side."

"""api/openapi.yaml and the server agree: same operations, valid spec, served with Swagger UI
from local assets; schemathesis fuzzes every operation against a live gateway process, once per
role (anonymous, user, owner, moderator, admin), held to what the authorization matrix allows."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from gateway.app import ROUTE_TABLES
from sharehub import accounts
from sharehub.config import REPO_ROOT
from sharehub.platform import Platform
from tests.authorization import ROLES, TOKEN_ROLES, Role, routes
from tests.fuzz_config import RoleRun
from tests.helpers import STRONG_PASSWORD, unique_email

SPEC_PATH = REPO_ROOT / "api" / "openapi.yaml"
METHODS = {"get", "put", "post", "patch", "delete"}


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return spec


def _operations() -> set[tuple[str, str]]:
    return {(method, path) for path, item in _spec()["paths"].items() for method in item if method in METHODS}


def test_spec_is_valid_openapi_3_1() -> None:
    spec = _spec()
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_route_is_in_the_spec_and_every_spec_operation_exists() -> None:
    served = {(s.method.lower(), s.path) for table in ROUTE_TABLES for s in table.routes}
    documented = _operations()
    assert served - documented == set(), "routes missing from api/openapi.yaml"
    assert documented - served == set(), "api/openapi.yaml lists routes the server does not have"


def test_spec_security_matches_route_access() -> None:
    spec = _spec()
    default_security = spec.get("security", [])
    for table in ROUTE_TABLES:
        for route in table.routes:
            operation = spec["paths"][route.path][route.method.lower()]
            security = operation.get("security", default_security)
            # `[{}, {bearerAuth: []}]`: a token is optional (PUBLIC_IDENTIFIED), but checked if sent.
            required = bool(security) and {} not in security
            assert required == route.access.authenticated, (route.method, route.path)
            assert ({} in security) == route.access.identify, (route.method, route.path)
            responses = operation["responses"]
            if route.access.authenticated or route.access.identify:
                assert "401" in responses, (route.method, route.path)
            if route.access.roles:
                assert "403" in responses, (route.method, route.path)
            if route.path.startswith("/api/v1/"):
                assert "429" in responses and "500" in responses, (route.method, route.path)
                # Any of them may meet a dependency that is down (sharehub/outages.py).
                assert "503" in responses, (route.method, route.path)


async def test_spec_and_swagger_ui_are_served_without_a_cdn(client: TestClient[Any, Any]) -> None:
    served = await client.get("/api/openapi.yaml")
    assert served.status == 200
    assert yaml.safe_load(await served.text()) == _spec()
    page = await client.get("/docs")
    html = await page.text()
    assert page.status == 200 and "swagger-ui" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/docs/static/") for a in assets), assets
    for asset in assets:
        assert (await client.get(asset)).status == 200, asset


async def _token(platform: Platform, base: str, role: Role) -> str | None:
    """A login of a new account with `role`'s roles, at the live gateway (None: anonymous)."""
    if role == "anonymous":
        return None
    email = unique_email(f"fuzz-{role}")
    await accounts.create_user(platform, email=email, password=STRONG_PASSWORD, display_name="Fuzz",
                               roles=TOKEN_ROLES[role])
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{base}/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD})
        token: str = (await resp.json())["access_token"]
    return token


# CPython 3.11.7 keeps the AST constructor's recursion counter per interpreter, not per thread, so
# two schemathesis workers parsing source at the same moment (hypothesis parses a module to describe
# a filter lambda) can fail with "SystemError: AST constructor recursion depth mismatch". The CLI runs
# with `ast.parse` behind a lock: one parse at a time.
_SCHEMATHESIS_CLI = """
import ast, runpy, threading
_parse, _lock = ast.parse, threading.Lock()
def _parse_one_at_a_time(*args, **kwargs):
    with _lock:
        return _parse(*args, **kwargs)
ast.parse = _parse_one_at_a_time
runpy.run_module("schemathesis.cli", run_name="__main__", alter_sys=True)
"""

# Examples per operation that the role may reach (operations the gateway refuses it get
# tests/fuzz_config.py REFUSED_EXAMPLES). Admins reach every operation, so theirs is the full run,
# every phase; the other roles' runs add what only they meet (their own objects and other people's,
# the refusals) with fewer examples and without the coverage phase, whose boundary values of each
# schema the admin run has already sent: five roles cost about twice what one did.
MAX_EXAMPLES: dict[Role, int] = {"admin": 25, "moderator": 8, "owner": 8, "user": 8, "anonymous": 5}
PHASES: dict[Role, str] = {role: "examples,fuzzing,stateful" for role in ROLES} | {
    "admin": "examples,coverage,fuzzing,stateful"}
# Calls that can end the login they use; each sends a login of its own (another account of the
# same role, so that a session id listed with the run's token is not one of its own).
LOGIN_ENDERS = {("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/auth/sessions/{session_id}")}
# An admin setting roles or status can end any admin's logins, the run's own included (its id
# is one `GET /api/v1/users/me` away): those two run apart, on a login of their own.
ADMIN_ONLY_RUN = {("PUT", "/api/v1/admin/users/{user_id}/roles"), ("PUT", "/api/v1/admin/users/{user_id}/status")}


def _schemathesis(base: str, config: Path, role: Role) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-c", _SCHEMATHESIS_CLI,
            "--config-file", str(config),
            "run", str(SPEC_PATH),
            "--url", base,
            "--checks", "all",
            "--max-examples", str(MAX_EXAMPLES[role]),
            "--phases", PHASES[role],
            "--workers", "2",
            "--seed", "20261127",
            "--suppress-health-check", "all",
        ],
        capture_output=True, text=True, timeout=900, check=False,
    )


async def _runs(platform: Platform, base: str, role: Role) -> list[RoleRun]:
    token = await _token(platform, base, role)
    if token is None:
        return [RoleRun(role, None)]
    own = {operation: await _token(platform, base, role) or "" for operation in LOGIN_ENDERS}
    if role != "admin":
        return [RoleRun(role, token, own_tokens=own)]
    everything = set(routes(ROUTE_TABLES))
    return [RoleRun(role, token, enabled=everything - ADMIN_ONLY_RUN, own_tokens=own),
            RoleRun(role, await _token(platform, base, role), enabled=ADMIN_ONLY_RUN)]


@pytest.mark.usefixtures("search_replica", "ml_serving")  # search and ml-core answer for real, not 503
@pytest.mark.parametrize("role", ROLES)
async def test_schemathesis_finds_no_failures(platform: Platform, live_gateway: str, tmp_path: Path,
                                              role: Role) -> None:
    """Every operation, generated valid and invalid inputs, as `role`: no 5xx; every response
    (status, content type, headers, body) matches the spec; and a valid request gets only what
    the authorization matrix allows this role (tests/authorization.py) or a documented business
    refusal (tests/schemathesis.toml) - a 2xx where the role must be refused fails the run."""
    tested_total = 0
    for number, run in enumerate(await _runs(platform, live_gateway, role)):
        config = tmp_path / f"schemathesis-{role}-{number}.toml"
        config.write_text(run.config(ROUTE_TABLES))
        result = await asyncio.to_thread(_schemathesis, live_gateway, config, role)
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
        tested = re.search(r"Tested: (\d+)", result.stdout)
        assert tested and int(tested.group(1)) > 0, result.stdout[-3000:]
        tested_total += int(tested.group(1))
    assert tested_total == len(_operations())

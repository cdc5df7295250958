"""The embedded stack and `sharehub run`: data survives restarts, nothing is left running."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import nats
import psutil
import pytest
import requests
from redis.asyncio import Redis

from sharehub.devstack import DevStack
from sharehub.devstack.postgres import EmbeddedPostgres, candidate_binaries
from sharehub.devstack.processes import free_port

pytestmark = pytest.mark.slow


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _wait_gone(pids: set[int], timeout_secs: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout_secs
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"}
        time.sleep(0.2)
    return alive


async def test_stack_data_survives_restart_and_stop_leaves_no_processes(tmp_path: Path) -> None:
    before = _descendants()
    stack = DevStack(tmp_path / "stack", with_ray=False)
    urls = stack.start()
    started = _descendants() - before
    assert len(started) >= 3
    conn = await asyncpg.connect(urls.database_url)
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('дрель')")
    await conn.close()
    redis = Redis.from_url(urls.redis_url)
    await redis.set("kept", "палатка")
    await redis.aclose()
    nc = await nats.connect(urls.nats_url)
    js = nc.jetstream()
    await js.add_stream(name="KEPT", subjects=["kept.>"])
    await js.publish("kept.one", b"velosiped", headers={"Nats-Msg-Id": "m1"})
    await nc.close()
    stack.stop()
    assert _wait_gone(started) == set()

    urls = stack.start()
    try:
        conn = await asyncpg.connect(urls.database_url)
        assert await conn.fetchval("SELECT v FROM kept") == "дрель"
        await conn.close()
        redis = Redis.from_url(urls.redis_url)
        assert await redis.get("kept") == "палатка".encode()
        await redis.aclose()
        nc = await nats.connect(urls.nats_url)
        msg = await nc.jetstream().get_msg("KEPT", seq=1)
        assert msg.data == b"velosiped"
        await nc.close()
    finally:
        stack.stop()


async def test_the_pgserver_wheel_engine_has_the_extensions_we_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations
    wheel_bin = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    monkeypatch.setenv("SHAREHUB_PG_BIN", str(wheel_bin))
    assert candidate_binaries()[0].bin_dir == wheel_bin
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    url = server.start()
    try:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE EXTENSION btree_gist; CREATE EXTENSION pg_trgm")
        await conn.execute("""CREATE TABLE booking (item int, period tstzrange,
                              EXCLUDE USING gist (item WITH =, period WITH &&))""")
        await conn.execute("INSERT INTO booking VALUES (1, '[2026-06-01,2026-06-05)')")
        with pytest.raises(asyncpg.ExclusionViolationError):
            await conn.execute("INSERT INTO booking VALUES (1, '[2026-06-03,2026-06-07)')")
        await conn.close()
    finally:
        server.stop()


def _start_run(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "NATS_URL", "REDIS_URL", "RAY_ADDRESS"}}
    env.update({"SHAREHUB_DATA_DIR": str(data_dir), "SHAREHUB_HTTP_PORT": str(port),
                "SHAREHUB_SERVE_HTTP_PORT": str(free_port())})
    return subprocess.Popen([sys.executable, "-m", "sharehub", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError("sharehub run did not become ready")


def _wait_for_first_models(base: str) -> None:
    """With no model yet, `sharehub run` trains in the background and the Serve replicas pick the
    promoted models up: similar listings start answering without a restart."""
    found = requests.get(f"{base}/api/v1/search", params={"q": "палатка"}, timeout=10)
    assert found.status_code == 200, found.text
    listing_id = found.json()["items"][0]["id"]
    deadline = time.monotonic() + 240
    while True:
        similar = requests.get(f"{base}/api/v1/listings/{listing_id}/similar", timeout=10)
        if similar.status_code == 200 and similar.json()["items"]:
            return
        assert similar.status_code == 503 and time.monotonic() < deadline, similar.text
        time.sleep(1)


def test_sharehub_run_restarts_with_its_data_and_leaves_no_orphans(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"

    proc = _start_run(data_dir, port)
    _wait_ready(proc, base)
    demo = json.loads((data_dir / "demo-credentials.json").read_text())
    admin = next(a for a in demo if a["email"] == "admin@sharehub.local")
    login = requests.post(f"{base}/api/v1/auth/login", json={"email": admin["email"], "password": admin["password"]},
                          timeout=10)
    assert login.status_code == 200
    created = requests.post(f"{base}/api/v1/auth/register", timeout=10, json={
        "email": "survivor@example.ru", "password": "Лето в Сочи 2026!", "display_name": "Тест"})
    assert created.status_code == 201
    _wait_for_first_models(base)
    tree = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=90)[0].decode()
    assert proc.returncode == 0, output
    assert "Stopped." in output
    assert _wait_gone(tree) == set(), "processes left behind after Ctrl-C"

    # Second start: same data, and a kill -9 of the supervisor still takes every child with it.
    proc = _start_run(data_dir, port)
    _wait_ready(proc, base)
    again = requests.post(f"{base}/api/v1/auth/login", timeout=10,
                          json={"email": "survivor@example.ru", "password": "Лето в Сочи 2026!"})
    assert again.status_code == 200
    assert json.loads((data_dir / "demo-credentials.json").read_text()) == demo
    tree = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    proc.kill()
    proc.wait(timeout=30)
    assert _wait_gone(tree, timeout_secs=60) == set(), "orphans after the supervisor was killed"

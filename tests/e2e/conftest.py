from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sharehub.config import Settings
from sharehub.devstack.processes import free_port, stop


@pytest.fixture(scope="session")
def live_gateway(migrated: Settings, tmp_root: Path) -> Iterator[str]:
    """A real `sharehub gateway` process on a free port, joined to the session's services and Ray."""
    port = free_port()
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": migrated.database_url or "",
        "NATS_URL": migrated.nats_url or "",
        "REDIS_URL": migrated.redis_url or "",
        "RAY_ADDRESS": migrated.ray_address or "",
        "SMTP_URL": migrated.smtp_url or "",
        "SHAREHUB_JWT_KEYS_DIR": str(migrated.jwt_keys_dir),
        "SHAREHUB_KEY_PUBLISH_DELAY_SECS": "0",
        "SHAREHUB_API_REQUESTS_PER_MINUTE": "1000000",
        "SHAREHUB_LOGIN_FAILURES_PER_IP": "1000000",
        "SHAREHUB_PASSWORD_RESETS_PER_IP": "1000000",
        "SHAREHUB_LOG_LEVEL": "WARNING",
    })
    log_path = tmp_root / "live-gateway.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sharehub", "gateway", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        stop(proc)

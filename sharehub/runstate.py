"""`.sharehub/run.json`: where a running `sharehub run` stack listens, so other commands
(`sharehub migrate`, `sharehub user create`, tests of the dev stack) can reach it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sharehub.devstack import ServiceUrls


def _path(data_dir: Path) -> Path:
    return data_dir / "run.json"


def write_run_state(data_dir: Path, urls: ServiceUrls, *, http_url: str) -> None:
    path = _path(data_dir)
    tmp = path.with_suffix(".tmp")
    # Ray's local cluster requires its token (~/.ray/auth_token) when ray.init set RAY_AUTH_MODE:
    # a CLI command joining it later (`sharehub reindex`) has to ask for the same mode.
    state = {"pid": os.getpid(), "http_url": http_url, **urls.__dict__,
             "ray_auth_mode": os.environ.get("RAY_AUTH_MODE", "")}
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def read_run_state(data_dir: Path) -> dict[str, str] | None:
    path = _path(data_dir)
    if not path.exists():
        return None
    state: dict[str, str] = json.loads(path.read_text())
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return None  # left behind by a stack that is gone
    return state


def clear_run_state(data_dir: Path) -> None:
    _path(data_dir).unlink(missing_ok=True)

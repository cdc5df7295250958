"""`sharehub reindex`: rebuild each search replica's index from Postgres, with a progress bar.

Replicas are rebuilt one after another, so at most one works on a build at any moment and every
replica keeps answering from its live index throughout (search/replica.py `rebuild`)."""

from __future__ import annotations

import sys
import time
from typing import Any

import ray

from search.replica_actor import ACTOR_PREFIX, replica_names
from sharehub.config import RAY_NAMESPACE
from sharehub.progress import Progress

_POLL_SECS = 0.2


def reindex_all(*, only: str | None = None) -> int:
    names = replica_names()
    if only is not None:
        names = [n for n in names if n == f"{ACTOR_PREFIX}{only}"]
    if not names:
        print("No search replicas are running.", file=sys.stderr)
        return 2
    for name in names:
        actor = ray.get_actor(name, namespace=RAY_NAMESPACE)
        started = time.monotonic()
        result = _rebuild_with_progress(actor, name)
        print(f"{name}: {result['documents']} listings indexed in {time.monotonic() - started:.1f} s")
    return 0


def _rebuild_with_progress(actor: Any, name: str) -> dict[str, Any]:
    started = time.monotonic()
    pending = actor.rebuild.remote()
    bar: Progress | None = None
    while True:
        ready, _ = ray.wait([pending], timeout=_POLL_SECS)
        status = ray.get(actor.status.remote())
        progress = status["progress"]
        if progress["total"] and bar is None and progress["phase"] == "building":
            bar = Progress(f"reindex {name}", progress["total"])
            bar.started = started  # the rate counts from the request, not from the first poll
        if bar is not None:
            bar.advance(max(0, progress["done"] - bar.done))
        if ready:
            result: dict[str, Any] = ray.get(pending)
            if bar is None:  # done before the first poll saw it building
                bar = Progress(f"reindex {name}", result["documents"])
                bar.started = started
            bar.__exit__(None, None, None)  # draws the finished bar
            return result

"""Search replicas as Ray actors, and finding them.

Each replica is a named, detached actor (`search-<name>`) holding its own index on local disk; a
query can go to any of them. Adding one is starting one more actor: it builds from Postgres,
follows the stream through its own durable consumer and is found by gateways the next time they
list the named actors (search/client.py). Queries run on the actor's event loop between event
batches; tantivy answers in a few milliseconds, so one loop serves both."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import ray

from search.metrics import RaySearchMetrics
from search.replica import SearchReplica
from search.request import SearchRequest, UnknownCategory
from sharehub.config import RAY_NAMESPACE

log = logging.getLogger(__name__)
ACTOR_PREFIX = "search-"


class NotReadyError(RuntimeError):
    """The replica is building its index; the client tries another."""


@ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=100, num_cpus=0)  # type: ignore[call-overload]
class SearchReplicaActor:
    def __init__(self, name: str, data_dir: str, database_url: str, nats_url: str) -> None:
        self._replica = SearchReplica(name, Path(data_dir), database_url=database_url, nats_url=nats_url,
                                      metrics=RaySearchMetrics(name))
        self._starting: asyncio.Task[None] | None = None

    def _ensure_starting(self) -> asyncio.Task[None]:
        # Started by the first call of any method: after Ray restarts a crashed replica, the
        # next query (or health check) brings it back without anyone calling `start`.
        if self._starting is None or (self._starting.done() and self._starting.exception() is not None):
            self._starting = asyncio.get_running_loop().create_task(self._replica.start())
        return self._starting

    async def start(self) -> dict[str, Any]:
        """Build or open the index and start following; waits until the replica serves."""
        await asyncio.shield(self._ensure_starting())
        return {**self._replica.status(), "pid": os.getpid()}

    def _ready(self) -> None:
        if not self._ensure_starting().done():
            raise NotReadyError(f"search replica {self._replica.name} is still building its index")

    async def search(self, request: SearchRequest) -> dict[str, Any]:
        self._ready()
        try:
            return self._replica.search(request).as_dict()
        except UnknownCategory as unknown:
            return {"error": "unknown_category", "category": str(unknown)}

    async def suggest(self, text: str, limit: int) -> dict[str, Any]:
        self._ready()
        return self._replica.suggest(text, limit)

    async def rebuild(self) -> dict[str, Any]:
        await self.start()
        return await self._replica.rebuild()

    async def status(self) -> dict[str, Any]:
        self._ensure_starting()
        return {**self._replica.status(), "pid": os.getpid()}

    async def stop(self) -> None:
        await self._replica.stop()


def replica_actor(name: str, *, data_dir: Path, database_url: str, nats_url: str) -> Any:
    """Get or create the named replica (`get_if_exists`: Ray's get-or-create)."""
    return SearchReplicaActor.options(  # type: ignore[attr-defined]
        name=f"{ACTOR_PREFIX}{name}", namespace=RAY_NAMESPACE, lifetime="detached", get_if_exists=True,
    ).remote(name, str(data_dir / name), database_url, nats_url)


def start_replicas(count: int, *, data_dir: Path, database_url: str, nats_url: str,
                   timeout_secs: float = 600) -> list[dict[str, Any]]:
    """Create `count` replicas (`0`, `1`, ...) and wait until each has its index."""
    actors = [replica_actor(str(i), data_dir=data_dir, database_url=database_url, nats_url=nats_url)
              for i in range(count)]
    return list(ray.get([actor.start.remote() for actor in actors], timeout=timeout_secs))


def ensure_replicas(count: int, *, data_dir: Path, database_url: str, nats_url: str) -> None:
    """Create missing replicas without waiting for their builds (a gateway at start, where no
    supervisor does it: Kubernetes, compose). Racing gateways get the same actors (by name)."""
    for i in range(count):
        replica_actor(str(i), data_dir=data_dir, database_url=database_url, nats_url=nats_url).status.remote()


def replica_names() -> list[str]:
    """The replicas alive in the cluster now, by actor name."""
    from ray.util import list_named_actors

    names = list_named_actors(all_namespaces=True)
    return sorted(entry["name"] for entry in names
                  if isinstance(entry, dict) and entry.get("namespace") == RAY_NAMESPACE
                  and str(entry.get("name", "")).startswith(ACTOR_PREFIX))

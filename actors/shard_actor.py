"""The Ray actor around a `ShardHost`, and how to reach the fleet of them.

A few named, detached, async actors live for the whole cluster (`shard-<i>-of-<n>`). Ray restarts
a crashed one (`max_restarts=-1`); the new incarnation takes its leases with a new epoch and
reloads entities lazily from Postgres. Calls are not retried by Ray (`max_task_retries=0`): the
router resends with the same command ids, which makes a retry effectively-once."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import ray

from actors.commands import Command, Result
from actors.entity import load_kinds
from actors.shard import ShardHost
from actors.shard_metrics import RayShardMetrics
from actors.sharding import ShardMap
from sharehub.config import RAY_NAMESPACE
from storage.db import create_pool

_PASSIVATE_EVERY_SECS = 60.0
_TIMER_POLL_SECS = 0.5
log = logging.getLogger(__name__)


# Ray's type stubs do not know the actor-only options (max_concurrency).
@ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=1000, num_cpus=0)  # type: ignore[call-overload]
class ShardActor:
    def __init__(self, physical: int, shard_map: ShardMap, database_url: str, kind_paths: list[str]) -> None:
        self._physical = physical
        self._shard_map = shard_map
        self._database_url = database_url
        self._kind_paths = kind_paths
        self._host: ShardHost | None = None
        self._starting = asyncio.Lock()
        self._background: list[asyncio.Task[None]] = []

    async def _ensure_started(self) -> ShardHost:
        if self._host is None:
            async with self._starting:
                if self._host is None:
                    pool = await create_pool(self._database_url, min_size=1, max_size=10)
                    host = ShardHost(physical=self._physical, shard_map=self._shard_map, pool=pool,
                                     kinds=load_kinds(self._kind_paths),
                                     metrics=RayShardMetrics(self._shard_map.actor_name(self._physical)))
                    await host.start()
                    loop = asyncio.get_running_loop()
                    self._background = [loop.create_task(self._passivate_forever(host)),
                                        loop.create_task(self._fire_timers_forever(host))]
                    self._host = host
        return self._host

    async def _passivate_forever(self, host: ShardHost) -> None:
        while True:
            await asyncio.sleep(_PASSIVATE_EVERY_SECS)
            host.passivate_idle()

    async def _fire_timers_forever(self, host: ShardHost) -> None:
        while True:
            try:
                fired = await host.fire_due_timers()
            except Exception:
                log.warning("firing timers failed; retrying", exc_info=True)
                fired = 0
            if fired == 0:
                await asyncio.sleep(_TIMER_POLL_SECS)

    async def handle_batch(self, commands: list[Command]) -> list[Result]:
        host = await self._ensure_started()
        return await host.handle_batch(commands)

    async def stats(self) -> dict[str, Any]:
        host = await self._ensure_started()
        return {**host.stats(), "pid": os.getpid()}


def shard_actor(shard_map: ShardMap, physical: int, database_url: str, kind_paths: list[str]) -> Any:
    """Get or create the named shard actor (`get_if_exists` is Ray's supported get-or-create)."""
    return ShardActor.options(  # type: ignore[attr-defined]
        name=shard_map.actor_name(physical),
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(physical, shard_map, database_url, kind_paths)

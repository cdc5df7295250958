"""The Ray actor around a `ShardHost`, and how to reach the fleet of them.

A few named, detached, async actors live for the whole cluster (`shard-<i>-of-<n>`). Ray restarts
a crashed one (`max_restarts=-1`); the new incarnation takes its leases with a new epoch and
reloads entities lazily from Postgres. Calls are not retried by Ray (`max_task_retries=0`): the
router resends with the same command ids, which makes a retry effectively-once.

An actor starts its host (pool, leases, timer and passivation loops) as it is created, not on its
first call: timers must fire after a restart or a deployment even when no traffic comes. If
Postgres is unreachable it keeps trying in the background and answers calls meanwhile with a
retryable 503 `shard_starting`, which the router resends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import ray

from actors.commands import Command, Result
from actors.entity import load_kinds
from actors.shard import ShardHost
from actors.shard_metrics import RayShardMetrics
from actors.sharding import ShardMap
from actors.timer_policy import TimerPolicy
from sharehub.config import RAY_NAMESPACE
from storage.db import create_pool

_PASSIVATE_EVERY_SECS = 60.0
_TIMER_POLL_SECS = 0.5
# Dead timers are counted again this often (an admin may have re-armed some); a timer dying
# updates the count at once.
_DEAD_COUNT_EVERY_SECS = 15.0
# Starting: one attempt may take this long (a Postgres that does not answer must not hold it
# forever); failed attempts are retried with backoff, forever - the actor stays up and recovers
# when the database does, instead of crash-looping through Ray restarts.
_START_ATTEMPT_SECS = 10.0
_START_RETRY_SECS = 0.25
_START_RETRY_MAX_SECS = 5.0
# Calls arriving while the first attempt runs wait for it (a healthy start takes milliseconds,
# so callers never see it); once an attempt has failed, calls are answered "retry" at once.
_FIRST_START_WAIT_SECS = 2.0
log = logging.getLogger(__name__)


class _NotStarted(Exception):
    """The host has not started yet (Postgres unreachable so far)."""


# Ray's type stubs do not know the actor-only options (max_concurrency).
@ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=1000, num_cpus=0)  # type: ignore[call-overload]
class ShardActor:
    def __init__(self, physical: int, shard_map: ShardMap, database_url: str, kind_paths: list[str],
                 timer_policy: TimerPolicy | None = None) -> None:
        self._physical = physical
        self._shard_map = shard_map
        self._database_url = database_url
        self._kind_paths = kind_paths
        self._timer_policy = timer_policy
        self._host: ShardHost | None = None
        self._start_failures = 0
        self._first_attempt_done = asyncio.Event()
        self._starter: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        try:
            # Ray runs an async actor's constructor on the actor's event loop (Ray 2.60: tasks
            # created here keep running), so the host starts with the actor. The constructor must
            # not wait for Postgres itself: an exception here makes Ray restart the actor in a
            # loop, and a wait here would hold every call until the database answers.
            self._start_soon()
        except RuntimeError:  # no running loop here: the first call starts it instead
            log.warning("shard actor constructed outside its event loop; it starts on its first call")

    def _start_soon(self) -> asyncio.Task[None]:
        """The one start task: concurrent first calls all wait on it, never start a second host."""
        if self._starter is None:
            self._starter = asyncio.get_running_loop().create_task(self._start_forever())
        return self._starter

    async def _start_forever(self) -> None:
        delay = _START_RETRY_SECS
        while self._host is None:
            try:
                host = await asyncio.wait_for(self._start_host(), _START_ATTEMPT_SECS)
            except Exception:
                self._start_failures += 1
                log.warning("shard %s could not start (attempt %d); retrying in %.2f s",
                            self._shard_map.actor_name(self._physical), self._start_failures, delay, exc_info=True)
                self._first_attempt_done.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _START_RETRY_MAX_SECS)
                continue
            loop = asyncio.get_running_loop()
            self._background = [loop.create_task(self._passivate_forever(host)),
                                loop.create_task(self._fire_timers_forever(host))]
            self._host = host
            self._first_attempt_done.set()

    async def _start_host(self) -> ShardHost:
        pool = await create_pool(self._database_url, min_size=1, max_size=10)
        try:
            host = ShardHost(physical=self._physical, shard_map=self._shard_map, pool=pool,
                             kinds=load_kinds(self._kind_paths), timer_policy=self._timer_policy,
                             metrics=RayShardMetrics(self._shard_map.actor_name(self._physical),
                                                     fleet=self._shard_map.fleet))
            await host.start()
        except BaseException:  # also a cancelled (timed-out) attempt: its connections must go
            pool.terminate()
            raise
        return host

    async def _ensure_started(self) -> ShardHost:
        """The started host, or `_NotStarted` once the first start attempt has failed (or is
        still running after `_FIRST_START_WAIT_SECS`)."""
        if self._host is None:
            self._start_soon()
            if not self._first_attempt_done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._first_attempt_done.wait(), _FIRST_START_WAIT_SECS)
            if self._host is None:
                raise _NotStarted
        return self._host

    async def _passivate_forever(self, host: ShardHost) -> None:
        while True:
            await asyncio.sleep(_PASSIVATE_EVERY_SECS)
            host.passivate_idle()

    async def _fire_timers_forever(self, host: ShardHost) -> None:
        counted_at = -_DEAD_COUNT_EVERY_SECS
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - counted_at >= _DEAD_COUNT_EVERY_SECS:
                    counted_at = loop.time()
                    await host.refresh_dead_timers()
                fired = await host.fire_due_timers()
            except Exception:
                log.warning("firing timers failed; retrying", exc_info=True)
                fired = 0
            # A full poll goes again at once (more may be due); failed timers are not due again
            # until their backoff is over, so this never spins on the same ones.
            if fired == 0:
                await asyncio.sleep(_TIMER_POLL_SECS)

    async def handle_batch(self, commands: list[Command]) -> list[Result]:
        try:
            host = await self._ensure_started()
        except _NotStarted:
            return [Result.error(503, "shard_starting", "The shard is starting (its database is not reachable "
                                 "yet); retry.", retryable=True)] * len(commands)
        return await host.handle_batch(commands)

    async def stats(self) -> dict[str, Any]:
        """The host's numbers; while it is not started, `started: false` and the failed attempts
        (stats never fail, so a health check can tell "starting" from "gone")."""
        try:
            host = await self._ensure_started()
        except _NotStarted:
            return {"started": False, "start_failures": self._start_failures, "pid": os.getpid()}
        return {**host.stats(), "started": True, "start_failures": self._start_failures, "pid": os.getpid()}


def shard_actor(shard_map: ShardMap, physical: int, database_url: str, kind_paths: list[str],
                timer_policy: TimerPolicy | None = None) -> Any:
    """Get or create the named shard actor (`get_if_exists` is Ray's supported get-or-create).
    The constructor's arguments count only when this call creates it."""
    return ShardActor.options(  # type: ignore[attr-defined]
        name=shard_map.actor_name(physical),
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(physical, shard_map, database_url, kind_paths, timer_policy)

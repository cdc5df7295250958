"""The caller's side (a gateway): route commands to shard actors in micro-batches.

One Ray call costs ~1-2 ms and tops out near 1.5k calls/s on 2 cores, while 100 commands in one
call move ~100k items/s. So commands for the same physical shard wait at most `window_secs`
(1 ms) or until `max_batch` are queued, then travel together - and while `max_in_flight` batches
are already on their way to that shard, the next batch keeps filling until one comes back (the
group-commit rule databases use: under load, batches grow by themselves instead of each command
paying a Ray call and a commit alone). A batch lost to a crashed actor is resent; a result marked
retryable is resent with the same command id, so nothing is applied twice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray.exceptions import ActorUnavailableError, RayActorError, RaySystemError

from actors.commands import Command, Result
from actors.shard_actor import shard_actor
from actors.sharding import ShardMap, logical_shard

log = logging.getLogger(__name__)
# A retryable result (an actor restarting - 0.5-2 s measured -, a shard changing owner, a
# conflict) is resent with backoff for at most this long, so a request never waits much past it;
# a database outage is not retryable here at all - it is answered at once, with Retry-After.
_RESEND_BUDGET_SECS = 3.0
_BACKOFF_SECS = 0.05
_MAX_BACKOFF_SECS = 0.5


class ShardRouter:
    def __init__(
        self,
        shard_map: ShardMap,
        *,
        database_url: str,
        kind_paths: list[str],
        window_secs: float = 0.001,
        max_batch: int = 100,
        max_in_flight: int = 2,
    ) -> None:
        self.shard_map = shard_map
        self.database_url = database_url
        self.kind_paths = kind_paths
        self.window_secs = window_secs
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._in_flight: dict[int, int] = {}
        self._actors: dict[int, Any] = {}
        self._pending: dict[int, list[tuple[Command, asyncio.Future[Result]]]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._inflight: set[asyncio.Task[None]] = set()

    def _actor(self, physical: int) -> Any:
        if physical not in self._actors:
            self._actors[physical] = shard_actor(self.shard_map, physical, self.database_url, self.kind_paths)
        return self._actors[physical]

    async def execute(self, command: Command) -> Result:
        """Send a command and wait for its committed result, resending (same command id) while it
        is retryable and the resend budget lasts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RESEND_BUDGET_SECS
        attempt = 0
        while True:
            result = await self._send(command)
            delay = min(_MAX_BACKOFF_SECS, _BACKOFF_SECS * 2**attempt)
            if not result.retryable or loop.time() + delay > deadline:
                return result
            await asyncio.sleep(delay)
            attempt += 1

    def _send(self, command: Command) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        physical = self.shard_map.physical_for(logical_shard(command.kind, command.entity_id))
        future: asyncio.Future[Result] = loop.create_future()
        queue = self._pending.setdefault(physical, [])
        queue.append((command, future))
        if len(queue) >= self.max_batch:
            self._flush(physical)
        elif physical not in self._timers:
            self._timers[physical] = loop.call_later(self.window_secs, self._flush, physical)
        return future

    def _flush(self, physical: int) -> None:
        timer = self._timers.pop(physical, None)
        if timer is not None:
            timer.cancel()
        waiting = len(self._pending.get(physical, ()))
        if self._in_flight.get(physical, 0) >= self.max_in_flight and waiting < self.max_batch:
            return  # a batch coming back sends this one (see _dispatch)
        batch = self._pending.pop(physical, [])
        if batch:
            task = asyncio.get_running_loop().create_task(self._dispatch(physical, batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _dispatch(self, physical: int, batch: list[tuple[Command, asyncio.Future[Result]]]) -> None:
        self._in_flight[physical] = self._in_flight.get(physical, 0) + 1
        try:
            await self._call(physical, batch)
        finally:
            self._in_flight[physical] -= 1
            if self._pending.get(physical):
                self._flush(physical)

    async def _call(self, physical: int, batch: list[tuple[Command, asyncio.Future[Result]]]) -> None:
        commands = [command for command, _ in batch]
        try:
            results: list[Result] = await self._actor(physical).handle_batch.remote(commands)
        except (RayActorError, ActorUnavailableError) as exc:
            # The actor died or is restarting: every command in the batch is answered "retry";
            # the ones it had committed will return their stored result on the resend.
            log.warning("shard %d unavailable: %s", physical, type(exc).__name__)
            self._actors.pop(physical, None)
            results = [Result.error(503, "shard_unavailable", "Shard restarting; retry.", retryable=True)] * len(batch)
        except RaySystemError as exc:
            # The cluster itself cannot be reached (its GCS is gone): nothing to resend to.
            log.warning("ray unavailable for shard %d: %s", physical, exc)
            self._actors.pop(physical, None)
            results = [Result.error(503, "ray_unavailable", "The entity service is unavailable; retry shortly.")
                       ] * len(batch)
        except Exception:
            # Never leave a caller waiting: an unexpected failure of the call answers the batch.
            log.exception("shard %d failed a batch", physical)
            results = [Result.error(500, "internal_error", "The command could not be applied.")] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

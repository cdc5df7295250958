"""Client-side micro-batching of calls to one Serve deployment method (the gateway's client).

A handle call costs a couple of milliseconds of CPU on each side whatever it carries, and the
model a fraction of that per question, so under load questions travel many to a call - as
commands travel to the shard actors. Nagle-style: a question is sent at once when fewer than
`max_in_flight` calls are out (no waiting window at low load); otherwise it waits for the next
call, which takes everything pending (up to `max_batch`). Each caller keeps its own deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[list[Any]], Awaitable[list[dict[str, Any]]]]


class CallBatcher:
    def __init__(self, send: Send, *, max_batch: int = 64, max_in_flight: int = 4) -> None:
        self._send = send
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[Any, asyncio.Future[dict[str, Any]]]] = []
        self._in_flight = 0

    async def call(self, payload: Any) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((payload, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._drain())
        # A caller that gives up (its deadline) leaves the batch to finish for the others.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                try:
                    answers = await self._send([payload for payload, _ in batch])
                    if len(answers) != len(batch):
                        raise RuntimeError(f"{len(answers)} answers to {len(batch)} questions")
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self._in_flight -= 1

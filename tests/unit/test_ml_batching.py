"""The gateway's micro-batcher: alone a question goes at once, under load questions share calls,
a failed call fails only its own batch, and a caller's deadline leaves the batch to the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ml.batching import CallBatcher


class _Replica:
    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.calls: list[list[Any]] = []
        self.fail_next = False

    async def send(self, payloads: list[Any]) -> list[dict[str, Any]]:
        self.calls.append(payloads)
        await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("replica gone")
        return [{"echo": payload} for payload in payloads]


async def test_a_lone_question_is_sent_at_once_and_many_share_calls() -> None:
    replica = _Replica()
    batcher = CallBatcher(replica.send, max_batch=64, max_in_flight=2)
    assert await batcher.call(1) == {"echo": 1} and replica.calls == [[1]]
    replica.calls.clear()
    answers = await asyncio.gather(*(batcher.call(i) for i in range(300)))
    assert answers == [{"echo": i} for i in range(300)]  # each caller gets its own answer
    assert len(replica.calls) < 12 and max(len(call) for call in replica.calls) == 64


async def test_a_failed_call_fails_its_batch_only_and_the_next_ones_go_on() -> None:
    replica = _Replica()
    batcher = CallBatcher(replica.send, max_batch=4, max_in_flight=1)
    replica.fail_next = True
    results = await asyncio.gather(*(batcher.call(i) for i in range(6)), return_exceptions=True)
    assert replica.calls == [[0, 1, 2, 3], [4, 5]]
    assert all(isinstance(result, ConnectionError) for result in results[:4])  # the failed batch
    assert results[4:] == [{"echo": 4}, {"echo": 5}]


async def test_a_caller_that_gives_up_leaves_the_batch_to_the_others() -> None:
    replica = _Replica(delay=0.05)
    batcher = CallBatcher(replica.send, max_in_flight=1)
    impatient = asyncio.create_task(asyncio.wait_for(batcher.call("a"), 0.01))
    patient = asyncio.create_task(batcher.call("b"))
    with pytest.raises(TimeoutError):
        await impatient
    assert await patient == {"echo": "b"}
    assert await batcher.call("c") == {"echo": "c"}  # and the batcher still works

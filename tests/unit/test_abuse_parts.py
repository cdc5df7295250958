"""The pure parts of the abuse limits: the in-process token buckets behind /readyz's limit, and
the argon2 pool's own threads and bounded line (sharehub/security/passwords.py `HashingPool`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from sharehub.errors import ApiError
from sharehub.ratelimit import LocalTokenBuckets
from sharehub.security.passwords import HashingPool


def test_buckets_allow_a_burst_then_answer_when_the_next_token_comes() -> None:
    buckets = LocalTokenBuckets(60)  # one a second, bursts of 60
    assert [buckets.take("198.51.100.1", 100.0) for _ in range(60)] == [None] * 60
    assert buckets.take("198.51.100.1", 100.0) == 1
    assert buckets.take("198.51.100.1", 100.5) == 1  # half a token is not a token
    assert buckets.take("198.51.100.1", 101.1) is None
    assert buckets.take("203.0.113.5", 101.1) is None  # every address has its own bucket


def test_retry_after_is_the_time_to_one_token_at_a_slow_rate() -> None:
    buckets = LocalTokenBuckets(3)  # one every 20 s
    assert [buckets.take("a", 0.0) for _ in range(4)] == [None, None, None, 20]
    assert buckets.take("a", 15.0) == 5


def test_buckets_forget_the_least_recently_seen_addresses_beyond_their_bound() -> None:
    buckets = LocalTokenBuckets(1, max_keys=2)
    assert buckets.take("first", 0.0) is None
    assert buckets.take("second", 0.0) is None
    assert buckets.take("first", 0.0) == 60  # "first" is now the most recently seen
    assert buckets.take("third", 0.0) is None  # evicts "second", not "first"
    assert buckets.take("first", 0.0) == 60
    assert buckets.take("second", 0.0) is None  # forgotten, so full again


async def test_the_pool_hashes_on_threads_of_its_own() -> None:
    pool = HashingPool(workers=2, queue=4)
    names = await asyncio.gather(*(pool.run(lambda: threading.current_thread().name) for _ in range(4)))
    assert all(name.startswith("argon2") for name in names), names
    assert await pool.verify(await pool.hash("Лето в Сочи 2026!"), "Лето в Сочи 2026!")
    assert not await pool.verify(None, "Лето в Сочи 2026!")
    assert pool.admitted == 0


async def _until(condition: Callable[[], bool], secs: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + secs
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_a_full_line_is_refused_at_once_with_503_auth_busy() -> None:
    pool = HashingPool(workers=1, queue=1)
    release = threading.Event()
    running = asyncio.ensure_future(pool.run(release.wait, 30))
    waiting = asyncio.ensure_future(pool.run(release.wait, 30))
    await asyncio.sleep(0)
    with pytest.raises(ApiError) as refused:
        await pool.run(release.wait, 30)
    assert refused.value.status == 503 and refused.value.code == "auth_busy"
    assert int(refused.value.headers["Retry-After"]) >= 1
    release.set()
    assert list(await asyncio.gather(running, waiting)) == [True, True]
    await _until(lambda: pool.admitted == 0)
    assert await pool.run(release.wait, 0) is True  # room again


async def test_a_caller_that_stops_waiting_does_not_free_the_slot_before_the_work_ends() -> None:
    pool = HashingPool(workers=1, queue=0)
    release = threading.Event()
    started = threading.Event()

    def work() -> bool:
        started.set()
        return release.wait(30)

    caller = asyncio.ensure_future(pool.run(work))
    await _until(started.is_set)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(ApiError):  # the hash still runs on the only thread: the line is still full
        await pool.run(release.wait, 0)
    release.set()
    await _until(lambda: pool.admitted == 0)
    assert await pool.run(release.wait, 0) is True

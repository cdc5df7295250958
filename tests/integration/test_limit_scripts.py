"""The Redis scripts behind the abuse limits, against the session's real Redis: a failure-slot
reservation and a socket slot are each taken atomically, so a parallel burst gets exactly the
limit through, and giving a slot back makes room again."""

from __future__ import annotations

import asyncio
import time
import uuid

from sharehub import presence
from sharehub.platform import Platform
from sharehub.ratelimit import Reservation, SlidingWindowLog, release, reserve_together


def _log(platform: Platform, limit: int, prefix: str = "test:rl") -> SlidingWindowLog:
    return SlidingWindowLog(platform.redis, prefix=f"{prefix}:{uuid.uuid4().hex}", limit=limit, window_secs=3600)


async def test_a_parallel_burst_reserves_exactly_the_limit(platform: Platform) -> None:
    window = _log(platform, 5)
    taken = await asyncio.gather(*(window.reserve("subject") for _ in range(40)))
    granted = [t for t in taken if isinstance(t, Reservation)]
    refused = [t for t in taken if isinstance(t, int)]
    assert len(granted) == 5 and len(refused) == 35
    # The slot that frees first is the oldest entry's, an hour after it was taken.
    assert all(3590 <= wait <= 3600 for wait in refused), refused
    assert await platform.redis.zcard(window.key("subject")) == 5


async def test_a_released_slot_is_free_again_and_others_stay_taken(platform: Platform) -> None:
    window = _log(platform, 2)
    first, second = await window.reserve("s"), await window.reserve("s")
    assert isinstance(first, Reservation) and isinstance(second, Reservation)
    assert isinstance(await window.reserve("s"), int)
    await release(platform.redis, first)
    assert isinstance(await window.reserve("s"), Reservation)
    assert isinstance(await window.reserve("s"), int)


async def test_windows_reserved_together_take_a_slot_in_all_or_in_none(platform: Platform) -> None:
    account, address = _log(platform, 3), _log(platform, 1)
    taken = await reserve_together(platform.redis, [(account, "acct"), (address, "ip")])
    assert isinstance(taken, Reservation)
    # The address window is full: the account window must not lose a slot to the refusal.
    assert isinstance(await reserve_together(platform.redis, [(account, "acct"), (address, "ip")]), int)
    assert await platform.redis.zcard(account.key("acct")) == 1
    await release(platform.redis, taken)
    assert await platform.redis.zcard(account.key("acct")) == 0
    assert await platform.redis.zcard(address.key("ip")) == 0


async def test_old_entries_leave_the_window(platform: Platform) -> None:
    window = SlidingWindowLog(platform.redis, prefix=f"test:rl:{uuid.uuid4().hex}", limit=1, window_secs=60)
    stale = time.time() - 61
    await platform.redis.zadd(window.key("s"), {f"{stale:.6f}:old": stale})
    assert isinstance(await window.reserve("s"), Reservation)


async def test_sockets_over_the_cap_are_refused_and_leave_no_entry(platform: Platform) -> None:
    user = uuid.uuid4()
    slots = await asyncio.gather(*(presence.reserve(platform.redis, user, cap=3) for _ in range(12)))
    granted = [s for s in slots if s is not None]
    assert len(granted) == 3
    assert sum(s.first for s in granted) == 1  # exactly one of them brought the user online
    assert await platform.redis.zcard(f"presence:{user}") == 3
    assert await presence.is_online(platform.redis, user)
    await presence.mark_offline(platform.redis, user, granted[0].connection_id)
    again = await presence.reserve(platform.redis, user, cap=3)
    assert again is not None and not again.first
    assert await presence.reserve(platform.redis, user, cap=3) is None


async def test_a_socket_whose_gateway_died_stops_holding_a_slot(platform: Platform) -> None:
    user = uuid.uuid4()
    assert await presence.reserve(platform.redis, user, cap=1, ttl=0.2) is not None
    assert await presence.reserve(platform.redis, user, cap=1) is None
    await asyncio.sleep(0.3)  # nobody refreshed it: its entry lapsed
    slot = await presence.reserve(platform.redis, user, cap=1)
    assert slot is not None and slot.first

"""Rate limits: in Redis when every gateway process must share them, in the process when not.

- `SlidingWindowLog`: exact "at most N events in the last W seconds" (a sorted set of event times);
  used for failed logins and wrong current passwords, where N is small and exactness matters for
  Retry-After. `reserve` takes a slot atomically *before* the attempt, so a parallel burst gets
  exactly N through; the caller gives the slot back when the attempt turns out not to count.
- `FixedWindowCounter`: one INCR per request; used for the coarse per-client API budget
  (`api_budget`: REST requests, websocket commands, failed authentications).
- `LocalTokenBuckets`: per-key token buckets in this process's memory, for what must keep
  working while Redis is down (`/readyz`)."""

from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

# Trim every window, refuse if any is full (answering the seconds until the oldest entry that
# matters leaves it), else add the entry to all of them: one round trip, atomic across gateways.
# KEYS: the windows; ARGV: now, window seconds, entry, then each window's limit.
_RESERVE = """
local now, window, entry = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local at = freeing[2] and tonumber(freeing[2]) or now
    wait = math.max(wait, math.ceil(at + window - now), 1)
  end
end
if wait > 0 then
  return wait
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, entry)
  redis.call('EXPIRE', key, math.ceil(window))
end
return 0
"""


@dataclass(frozen=True)
class Reservation:
    """A slot taken in one or more windows; `release` gives it back."""

    keys: tuple[str, ...]
    entry: str


class SlidingWindowLog:
    def __init__(self, redis: Redis, *, prefix: str, limit: int, window_secs: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.limit = limit
        self.window_secs = window_secs

    def key(self, subject: str) -> str:
        return f"{self.prefix}:{subject}"

    async def reserve(self, subject: str) -> Reservation | int:
        """Take a slot now (a Reservation), or the seconds until one frees (an int)."""
        return await reserve_together(self.redis, [(self, subject)])

    async def reset(self, subject: str) -> None:
        await self.redis.delete(self.key(subject))


def _entry(now: float) -> str:
    return f"{now:.6f}:{secrets.token_hex(4)}"


async def reserve_together(redis: Redis, windows: Sequence[tuple[SlidingWindowLog, str]]) -> Reservation | int:
    """One slot in every (window, subject) at once, or none: the seconds until all have room.
    The windows must share their length (they are trimmed with one)."""
    window_secs = windows[0][0].window_secs
    assert all(log.window_secs == window_secs for log, _ in windows)
    keys = tuple(log.key(subject) for log, subject in windows)
    now = time.time()
    entry = _entry(now)
    script = redis.register_script(_RESERVE)
    wait = int(await script(keys=list(keys), args=[repr(now), window_secs, entry,
                                                   *(log.limit for log, _ in windows)]))
    return wait if wait > 0 else Reservation(keys, entry)


async def release(redis: Redis, reservation: Reservation) -> None:
    """Give a reserved slot back (the attempt did not count as a failure)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in reservation.keys:
            pipe.zrem(key, reservation.entry)
        await pipe.execute()


class FixedWindowCounter:
    def __init__(self, redis: Redis, *, prefix: str, limit: int, window_secs: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.limit = limit
        self.window_secs = window_secs

    async def hit(self, subject: str) -> int | None:
        """Count one request; returns Retry-After seconds when over the limit, else None."""
        now = time.time()
        window = int(now // self.window_secs)
        key = f"{self.prefix}:{subject}:{window}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_secs + 1)
            count, _ = await pipe.execute()
        if int(count) <= self.limit:
            return None
        return max(1, math.ceil((window + 1) * self.window_secs - now))


def api_budget(redis: Redis, requests_per_minute: int) -> FixedWindowCounter:
    """The per-client API budget every gateway shares: `user:<id>` for a caller with a valid
    token, `ip:<address>` for everyone else (anonymous requests and failed authentications)."""
    return FixedWindowCounter(redis, prefix="rl:api", limit=requests_per_minute, window_secs=60)


class LocalTokenBuckets:
    """`rate_per_minute` per key with bursts of as many, in this process only. At most
    `max_keys` keys are remembered (the least recently seen go first), so a flood from many
    addresses cannot grow it without bound; a forgotten key starts full again, which only ever
    errs towards letting a request through."""

    def __init__(self, rate_per_minute: int, *, max_keys: int = 4096) -> None:
        self.capacity = float(max(rate_per_minute, 1))
        self.rate_per_sec = self.capacity / 60.0
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    def take(self, key: str, now: float) -> int | None:
        """Take one token; None when allowed, else the seconds until one is there."""
        tokens, stamp = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - stamp) * self.rate_per_sec)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return None if allowed else max(1, math.ceil((1.0 - tokens) / self.rate_per_sec))

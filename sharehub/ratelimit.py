"""Rate limits kept in Redis, shared by every gateway process.

- `SlidingWindowLog`: exact "at most N events in the last W seconds" (a sorted set of event times);
  used for failed logins, where N is small and exactness matters for Retry-After.
- `FixedWindowCounter`: one INCR per request; used for the coarse per-client API limit."""

from __future__ import annotations

import math
import secrets
import time

from redis.asyncio import Redis


class SlidingWindowLog:
    def __init__(self, redis: Redis, *, prefix: str, limit: int, window_secs: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.limit = limit
        self.window_secs = window_secs

    def _key(self, subject: str) -> str:
        return f"{self.prefix}:{subject}"

    async def retry_after(self, subject: str) -> int | None:
        """Seconds until one more event is allowed, or None if it is allowed now."""
        key = self._key(subject)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, 0, now - self.window_secs)
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
            _, count, oldest = await pipe.execute()
        if count < self.limit:
            return None
        oldest_time = oldest[0][1] if oldest else now
        return max(1, math.ceil(oldest_time + self.window_secs - now))

    async def record(self, subject: str) -> None:
        key = self._key(subject)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {f"{now:.6f}:{secrets.token_hex(4)}": now})
            # Keep the set bounded even under a flood: only the newest `limit` entries matter.
            pipe.zremrangebyrank(key, 0, -(self.limit + 1))
            pipe.expire(key, self.window_secs)
            await pipe.execute()

    async def reset(self, subject: str) -> None:
        await self.redis.delete(self._key(subject))


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

"""Who is online, across every gateway process, in Redis.

`presence:<user id>` is a sorted set of the user's open websocket connections scored by when
each stops counting (its last heartbeat plus a grace). A user is online while any score is in the
future, so a gateway that dies without cleaning up stops counting within `PRESENCE_TTL_SECS`.

The same set caps a user's open sockets across every gateway process: `reserve` adds a socket
before its upgrade only if the user has fewer than the cap (a Lua script, so two gateways
cannot both take the last slot), and closing the socket (`mark_offline`) frees its slot."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

PRESENCE_TTL_SECS = 45.0
# Core NATS subject a gateway announces a user's online/offline change on (ephemeral, not stored).
PRESENCE_SUBJECT = "presence.{user_id}"


# Drop what stopped counting, refuse if the user has `cap` sockets, else add this one.
# KEYS: presence:<user>; ARGV: now, the entry's expiry, connection id, cap, key ttl.
# Answers the number of sockets the user had before (so 0: the user just came online), or -1.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[4]) then
  return -1
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return open
"""


@dataclass(frozen=True)
class Slot:
    """A socket counted in presence: `first` when the user had no other socket open."""

    connection_id: str
    first: bool


def _key(user_id: uuid.UUID | str) -> str:
    return f"presence:{user_id}"


async def reserve(redis: Redis, user_id: uuid.UUID | str, cap: int,
                  ttl: float = PRESENCE_TTL_SECS) -> Slot | None:
    """Count one more socket of the user, if the user has fewer than `cap` open (None if not).
    The caller must `mark_offline` the slot's connection id when the socket closes - or when it
    never opens."""
    connection_id, now = new_connection_id(), time.time()
    script = redis.register_script(_RESERVE)
    before = int(await script(keys=[_key(user_id)], args=[repr(now), repr(now + ttl), connection_id, cap,
                                                          int(ttl) + 5]))
    return None if before < 0 else Slot(connection_id, first=before == 0)


async def mark_online(redis: Redis, user_id: uuid.UUID | str, connection_id: str,
                      ttl: float = PRESENCE_TTL_SECS) -> bool:
    """Record (or refresh) one connection; True when the user was offline before."""
    key, now = _key(user_id), time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zcard(key)
        pipe.zadd(key, {connection_id: now + ttl})
        pipe.expire(key, int(ttl) + 5)
        _, before, _, _ = await pipe.execute()
    return int(before) == 0


async def mark_offline(redis: Redis, user_id: uuid.UUID | str, connection_id: str) -> bool:
    """Forget one connection; True when it was the user's last."""
    key, now = _key(user_id), time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(key, connection_id)
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zcard(key)
        _, _, after = await pipe.execute()
    return int(after) == 0


async def refresh_many(redis: Redis, connections: Sequence[tuple[str, str]],
                       ttl: float = PRESENCE_TTL_SECS) -> None:
    """Extend many (user id, connection id) entries in one round trip: a gateway keeps all its
    sockets counted with one call every few seconds instead of one per socket."""
    if not connections:
        return
    until = time.time() + ttl
    async with redis.pipeline(transaction=False) as pipe:
        for user_id, connection_id in connections:
            pipe.zadd(_key(user_id), {connection_id: until})
            pipe.expire(_key(user_id), int(ttl) + 5)
        await pipe.execute()


async def is_online(redis: Redis, user_id: uuid.UUID | str) -> bool:
    return bool(await redis.zcount(_key(user_id), time.time(), "+inf"))


async def online_among(redis: Redis, user_ids: list[str]) -> dict[str, bool]:
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for user_id in user_ids:
            pipe.zcount(_key(user_id), now, "+inf")
        counts = await pipe.execute()
    return {user_id: bool(count) for user_id, count in zip(user_ids, counts, strict=True)}


def new_connection_id() -> str:
    return uuid.uuid4().hex

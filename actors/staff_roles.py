"""Shard actors check the staff roles a command claims.

Gateways verify the caller's token and pass its roles along with the command; anything that can
reach the Ray cluster can call `handle_batch` directly and claim any roles. The cheap part of that
is closed here: a command claiming `moderator` or `admin` for a user is refused (403) unless the
user holds that role in Postgres now. Such commands are rare (moderation), so the check costs one
small query per batch that has one, with a short cache. (`system` - timers, event consumers - has
no user to check; docs/security.md says what protects it.)"""

from __future__ import annotations

import time
import uuid

import asyncpg

from actors.commands import Command, Result
from storage import users as user_store
from storage.db import server_gone

STAFF_ROLES = frozenset({"moderator", "admin"})
# A role taken away is refused by shards within this long (gateways refuse its tokens at once).
_CACHE_SECS = 5.0
_CACHE_MAX = 10_000


class StaffRoles:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: dict[uuid.UUID, tuple[float, frozenset[str]]] = {}

    async def forged(self, commands: list[Command]) -> dict[int, Result]:
        """Refusals for the commands (by index) whose claimed staff roles their user does not hold."""
        claims = {i: c for i, c in enumerate(commands) if c.actor_roles & STAFF_ROLES and c.actor_id}
        if not claims:
            return {}
        now = time.monotonic()
        users = {uuid.UUID(str(c.actor_id)) for c in claims.values()}
        missing = [u for u in users if u not in self._cache or self._cache[u][0] < now]
        if missing:
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            try:
                held = await user_store.staff_roles(self.pool, missing)
            except Exception as exc:
                if not server_gone(exc):
                    raise
                unavailable = Result.error(503, "database_unavailable", "The database is unavailable; retry shortly.")
                return dict.fromkeys(claims, unavailable)
            for user in missing:
                self._cache[user] = (now + _CACHE_SECS, held.get(user, frozenset()))
        refusals = {}
        for index, command in claims.items():
            holds = self._cache[uuid.UUID(str(command.actor_id))][1]
            if not (command.actor_roles & STAFF_ROLES) <= holds:
                refusals[index] = Result.error(403, "forbidden", "Your role does not allow this.")
        return refusals

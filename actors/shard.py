"""The shard host: many entities of many kinds in one process, one command at a time per entity.

This is the logic of a shard actor without Ray (so it can be tested, and run twice to prove
fencing). For each command:
1. activate the entity if it is not in memory (load from Postgres), under the entity's lock;
2. `decide` on the in-memory state (pure);
3. one transaction: the shard's lease epoch is still ours, the command id is new, the row still
   has our version; store the state, the outbox events and the command's result; commit;
4. only then update memory and answer.
A stale owner (its epoch was bumped by a newer owner) is refused at step 3 and drops everything
it held for that shard; a retried command id finds its first result at step 3."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from actors.commands import Command, Result
from actors.entity import Decision, EntityKind, Rejected, SetTimer, VersionConflict
from actors.sharding import ShardMap, logical_shard
from storage import runtime as store
from storage.db import connection

log = logging.getLogger(__name__)


TIMER_PREFIX = "timer:"


def _is_timer(command: Command) -> bool:
    return command.name.startswith(TIMER_PREFIX) and "system" in command.actor_roles


def _timer_name(command: Command) -> str:
    return command.name.removeprefix(TIMER_PREFIX)


class StaleOwner(Exception):
    """Our lease epoch is no longer current: another owner took the shard."""


@dataclass
class Activation:
    """An entity in memory. `loaded` is False until its state has been read from Postgres."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded: bool = False
    state: Any = None
    version: int = 0
    last_used: float = field(default_factory=time.monotonic)


class ShardHost:
    def __init__(
        self,
        *,
        physical: int,
        shard_map: ShardMap,
        pool: asyncpg.Pool,
        kinds: dict[str, EntityKind],
        max_live: int = 10_000,
        idle_secs: float = 600.0,
    ) -> None:
        self.physical = physical
        self.shard_map = shard_map
        self.pool = pool
        self.kinds = kinds
        self.max_live = max_live
        self.idle_secs = idle_secs
        self.owner = f"{shard_map.actor_name(physical)}/{uuid.uuid4()}"
        self.epochs: dict[int, int] = {}
        self._live: OrderedDict[tuple[str, str], Activation] = OrderedDict()

    async def start(self) -> None:
        async with connection(self.pool) as conn:
            self.epochs = await store.take_leases(
                conn, self.shard_map.fleet, self.shard_map.logical_of(self.physical), self.owner
            )
        log.info("shard %s owns %d logical shards", self.owner, len(self.epochs))

    # ------------------------------------------------------------------ commands

    async def handle_batch(self, commands: list[Command]) -> list[Result]:
        # Tasks start in list order and each entity's lock is FIFO, so commands for one entity
        # run in the order they were batched; different entities run concurrently.
        return list(await asyncio.gather(*(self.handle(command) for command in commands)))

    def _refusal(self, command: Command) -> Result | None:
        """Why this host will not even try the command, if it will not."""
        if command.kind not in self.kinds:
            return Result.error(400, "unknown_entity_kind", f"No entity kind {command.kind!r}.")
        if command.name.startswith(TIMER_PREFIX) and not _is_timer(command):
            return Result.error(403, "forbidden", "Timers fire only from the runtime.")
        if logical_shard(command.kind, command.entity_id) not in self.epochs:
            return Result.error(503, "shard_moved", "This shard is owned elsewhere; retry.", retryable=True)
        return None

    async def handle(self, command: Command) -> Result:
        refusal = self._refusal(command)
        if refusal is not None:
            return refusal
        kind = self.kinds[command.kind]
        shard = logical_shard(command.kind, command.entity_id)
        key = (command.kind, command.entity_id)
        activation = self._activation(key)
        async with activation.lock:
            activation.last_used = time.monotonic()
            try:
                return await self._apply(kind, shard, activation, command)
            except StaleOwner:
                self._drop_shard(shard)
                return Result.error(503, "shard_moved", "This shard has a newer owner; retry.", retryable=True)
            except VersionConflict:
                self._live.pop(key, None)
                return Result.error(409, "concurrent_update", "The entity changed concurrently; retry.",
                                    retryable=True)
            except (asyncpg.PostgresConnectionError, OSError, TimeoutError):
                self._live.pop(key, None)
                log.warning("database unavailable while handling %s", command.name, exc_info=True)
                return Result.error(503, "storage_unavailable", "Storage is unavailable; retry.", retryable=True)
            finally:
                self._evict_over_capacity()

    async def _apply(self, kind: EntityKind, shard: int, activation: Activation, command: Command) -> Result:
        epoch = self.epochs.get(shard)
        if epoch is None:  # lost while this command waited for the entity's lock
            raise StaleOwner
        if not activation.loaded:
            async with connection(self.pool) as conn:
                loaded = await kind.load(conn, command.entity_id)
            activation.state, activation.version = loaded if loaded is not None else (None, 0)
            activation.loaded = True
        try:
            decision = kind.decide(activation.state, command)
        except Rejected as rejected:
            # A retry of a command that succeeded earlier must get that first answer, not a
            # rejection computed from the state it already changed.
            stored = await store.stored_result(self.pool, command.command_id)
            if stored is not None:
                return Result.from_json(stored)
            if _is_timer(command):  # a timer the entity no longer cares about: spend it
                await self._consume_timer(shard, epoch, command)
            return Result.error(rejected.status, rejected.code, rejected.detail)
        if not decision.changed:
            if _is_timer(command):
                await self._consume_timer(shard, epoch, command)
            return Result(ok=True, reply=decision.reply)
        result = Result(ok=True, reply=decision.reply)
        new_version = activation.version + 1
        try:
            async with connection(self.pool) as conn, conn.transaction():
                if not await store.check_lease(conn, self.shard_map.fleet, shard, epoch):
                    raise StaleOwner
                await store.record_command(conn, command.command_id, command.kind, command.entity_id,
                                           result.as_json())
                await kind.save(conn, command.entity_id, decision.state, activation.version)
                await store.add_outbox_events(conn, self._outbox_rows(command, decision.events, new_version))
                await self._write_timers(conn, shard, command, decision)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "processed_commands_pkey":
                raise
            stored = await store.stored_result(self.pool, command.command_id)
            assert stored is not None
            return Result.from_json(stored)
        activation.state, activation.version = decision.state, new_version
        return result

    async def _write_timers(self, conn: asyncpg.Connection, shard: int, command: Command, decision: Decision) -> None:
        if _is_timer(command):
            await store.consume_timer(conn, command.kind, command.entity_id, _timer_name(command), command.command_id)
        for change in decision.timers:
            if isinstance(change, SetTimer):
                await store.set_timer(conn, fleet=self.shard_map.fleet, shard=shard, kind=command.kind,
                                      entity_id=command.entity_id, name=change.name, fire_at=change.fire_at,
                                      payload=change.payload)
            else:
                await store.cancel_timer(conn, command.kind, command.entity_id, change.name)

    async def _consume_timer(self, shard: int, epoch: int, command: Command) -> None:
        async with connection(self.pool) as conn, conn.transaction():
            if not await store.check_lease(conn, self.shard_map.fleet, shard, epoch):
                raise StaleOwner
            await store.consume_timer(conn, command.kind, command.entity_id, _timer_name(command), command.command_id)

    async def fire_due_timers(self, limit: int = 100) -> int:
        """Fire the due timers of the entities this host owns, as commands; returns how many."""
        if not self.epochs:
            return 0
        rows = await store.due_timers(self.pool, self.shard_map.fleet, list(self.epochs), limit)
        commands = [
            Command(command_id=row["command_id"], kind=row["entity_kind"], entity_id=row["entity_id"],
                    name=f"{TIMER_PREFIX}{row['name']}", payload=row["payload"], actor_roles=frozenset({"system"}))
            for row in rows
        ]
        await self.handle_batch(commands)
        return len(commands)

    @staticmethod
    def _outbox_rows(command: Command, events: list[Any], version: int) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC).isoformat()
        rows = []
        for event in events:
            event_id = uuid.uuid4()
            payload = {
                "event_id": str(event_id), "type": event.type, "kind": command.kind,
                "entity_id": command.entity_id, "version": version, "occurred_at": now, "data": event.data,
            }
            subject = f"{command.kind}.{command.entity_id}.{event.type}"
            rows.append((event_id, subject, command.kind, command.entity_id, event.type, payload))
        return rows

    # ------------------------------------------------------------------ memory

    def _activation(self, key: tuple[str, str]) -> Activation:
        activation = self._live.get(key)
        if activation is None:
            activation = self._live[key] = Activation()
        self._live.move_to_end(key)
        return activation

    def _evict_over_capacity(self) -> None:
        for key in list(self._live):
            if len(self._live) <= self.max_live:
                break
            if not self._live[key].lock.locked():
                del self._live[key]

    def passivate_idle(self) -> int:
        """Forget entities idle for longer than `idle_secs`; they reload on their next command."""
        cutoff = time.monotonic() - self.idle_secs
        idle = [k for k, a in self._live.items() if a.last_used < cutoff and not a.lock.locked()]
        for key in idle:
            del self._live[key]
        return len(idle)

    def _drop_shard(self, shard: int) -> None:
        log.warning("shard %s lost logical shard %d to a newer owner", self.owner, shard)
        self.epochs.pop(shard, None)
        for key in [k for k in self._live if logical_shard(*k) == shard]:
            del self._live[key]

    def stats(self) -> dict[str, Any]:
        return {"owner": self.owner, "logical_shards": len(self.epochs), "live_entities": len(self._live)}

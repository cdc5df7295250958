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
import contextlib
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


@dataclass(frozen=True)
class _Change:
    """A decided state change waiting to be stored."""

    command: Command
    kind: EntityKind
    shard: int
    activation: Activation
    decision: Decision

    @property
    def result(self) -> Result:
        return Result(ok=True, reply=self.decision.reply)

    def applied(self) -> None:
        """After commit: the entity in memory becomes what was stored."""
        self.activation.state = self.decision.state
        self.activation.version += 1


class _GroupFallback(Exception):
    """The wave cannot commit as one group; its commands go one by one."""


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
        """Group commit: the batch runs in waves - the 1st command of every entity, then the 2nd...
        (so each entity's commands keep their order) - and each wave's changes commit together in
        one transaction: one lease check, one insert of command ids, one of events, one commit."""
        results: list[Result | None] = [None] * len(commands)
        queues: dict[tuple[str, str], list[int]] = {}
        for index, command in enumerate(commands):
            refusal = self._refusal(command)
            if refusal is not None:
                results[index] = refusal
            else:
                queues.setdefault((command.kind, command.entity_id), []).append(index)
        depth = max((len(queue) for queue in queues.values()), default=0)
        for level in range(depth):
            wave = [queue[level] for queue in queues.values() if len(queue) > level]
            for index, result in zip(wave, await self._run_wave([commands[i] for i in wave]), strict=True):
                results[index] = result
        return [r if r is not None else Result.error(500, "internal_error", "No result.") for r in results]

    async def _run_wave(self, commands: list[Command]) -> list[Result]:
        """Commands for distinct entities: lock them all (in key order, so two waves never
        deadlock), commit them together, or one by one if the group cannot commit as a whole."""
        activations = {(c.kind, c.entity_id): self._activation((c.kind, c.entity_id)) for c in commands}
        async with contextlib.AsyncExitStack() as held:
            for key in sorted(activations):
                await held.enter_async_context(activations[key].lock)
                activations[key].last_used = time.monotonic()
            try:
                grouped = await self._commit_group(commands, activations)
            except _GroupFallback:
                grouped = {}
            results = [
                grouped[index] if index in grouped
                else await self._guarded_apply(command, activations[(command.kind, command.entity_id)])
                for index, command in enumerate(commands)
            ]
        self._evict_over_capacity()  # after the locks are released, or nothing could go
        return results

    async def _commit_group(
        self, commands: list[Command], activations: dict[tuple[str, str], Activation]
    ) -> dict[int, Result]:
        """Commit every plain state change of the wave in one transaction; returns their results.
        Anything else (rejections, queries, timers, a lost shard) is left to the one-by-one path."""
        group: dict[int, _Change] = {}
        for index, command in enumerate(commands):
            shard = logical_shard(command.kind, command.entity_id)
            if shard not in self.epochs or _is_timer(command):
                continue
            kind, activation = self.kinds[command.kind], activations[(command.kind, command.entity_id)]
            await self._activate(kind, activation, command.entity_id)
            try:
                decision = kind.decide(activation.state, command)
            except Rejected:
                continue
            if decision.changed:
                group[index] = _Change(command, kind, shard, activation, decision)
        if len(group) < 2:
            return {}  # nothing to share a transaction with
        changes = list(group.values())
        try:
            async with connection(self.pool) as conn, conn.transaction():
                if await store.any_processed(conn, [change.command.command_id for change in changes]):
                    raise _GroupFallback  # a retry in the wave: the one-by-one path answers it
                epochs = {change.shard: self.epochs[change.shard] for change in changes}
                if not await store.check_leases(conn, self.shard_map.fleet, epochs):
                    raise _GroupFallback
                await self._write_changes(conn, changes)
        except Exception as exc:
            # Whatever stops the group (a retry, a lost shard, one bad value) is sorted out by
            # running the wave one command at a time, where each failure stays with its command.
            raise _GroupFallback from exc
        for change in changes:
            change.applied()
        return {index: change.result for index, change in group.items()}

    async def _write_changes(self, conn: asyncpg.Connection, changes: list[_Change]) -> None:
        """Store decided changes (inside the caller's transaction, leases already checked): the
        command ids with their results, the new states, the outbox events, the timers."""
        await store.record_commands(conn, [
            (c.command.command_id, c.command.kind, c.command.entity_id, c.result.as_json()) for c in changes
        ])
        events = []
        for change in changes:
            await change.kind.save(conn, change.command.entity_id, change.decision.state, change.activation.version)
            events += self._outbox_rows(change.command, change.decision.events, change.activation.version + 1)
            await self._write_timers(conn, change.shard, change.command, change.decision)
        await store.add_outbox_events(conn, events)

    async def _activate(self, kind: EntityKind, activation: Activation, entity_id: str) -> None:
        if not activation.loaded:
            async with connection(self.pool) as conn:
                loaded = await kind.load(conn, entity_id)
            activation.state, activation.version = loaded if loaded is not None else (None, 0)
            activation.loaded = True

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
        activation = self._activation((command.kind, command.entity_id))
        async with activation.lock:
            activation.last_used = time.monotonic()
            try:
                return await self._guarded_apply(command, activation)
            finally:
                self._evict_over_capacity()

    async def _guarded_apply(self, command: Command, activation: Activation) -> Result:
        """One command, its entity's lock held by the caller; failures become retryable results."""
        kind = self.kinds[command.kind]
        shard = logical_shard(command.kind, command.entity_id)
        key = (command.kind, command.entity_id)
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
        except Exception:
            # A bug or a value the database refuses: this command fails alone, visibly, and is not
            # retried; the entity reloads from Postgres on its next command.
            self._live.pop(key, None)
            log.exception("command %s on %s %s failed", command.name, command.kind, command.entity_id)
            return Result.error(500, "internal_error", "The command could not be applied.")

    async def _apply(self, kind: EntityKind, shard: int, activation: Activation, command: Command) -> Result:
        epoch = self.epochs.get(shard)
        if epoch is None:  # lost while this command waited for the entity's lock
            raise StaleOwner
        await self._activate(kind, activation, command.entity_id)
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
        change = _Change(command, kind, shard, activation, decision)
        try:
            async with connection(self.pool) as conn, conn.transaction():
                if not await store.check_leases(conn, self.shard_map.fleet, {shard: epoch}):
                    raise StaleOwner
                await self._write_changes(conn, [change])
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "processed_commands_pkey":
                raise
            stored = await store.stored_result(self.pool, command.command_id)
            assert stored is not None
            return Result.from_json(stored)
        change.applied()
        return change.result

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
            if not await store.check_leases(conn, self.shard_map.fleet, {shard: epoch}):
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

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
from actors.entity import CancelTimer, Decision, EntityKind, Rejected, SetTimer, VersionConflict
from actors.shard_metrics import NoMetrics, ShardMetrics
from actors.sharding import ShardMap, logical_shard
from actors.staff_roles import StaffRoles
from actors.timer_policy import TimerOutcome, TimerPolicy, timer_outcome
from storage import runtime as store
from storage import timers as timer_store
from storage.db import connection, server_gone

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
    # The entity's version before this change (the row must still have it).
    version: int

    @property
    def result(self) -> Result:
        refusal = self.decision.refusal
        if refusal is not None:
            return Result.error(refusal.status, refusal.code, refusal.detail)
        return Result(ok=True, reply=self.decision.reply)

    def applied(self) -> None:
        """After commit: the entity in memory becomes what was stored."""
        self.activation.state = self.decision.state
        self.activation.version = self.version + 1
        self.activation.loaded = True


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
        metrics: ShardMetrics | None = None,
        timer_policy: TimerPolicy | None = None,
    ) -> None:
        self.physical = physical
        self.shard_map = shard_map
        self.pool = pool
        self.kinds = kinds
        self.max_live = max_live
        self.idle_secs = idle_secs
        self.metrics: ShardMetrics = metrics or NoMetrics()
        self.timer_policy = timer_policy or TimerPolicy()
        self.owner = f"{shard_map.actor_name(physical)}/{uuid.uuid4()}"
        self.epochs: dict[int, int] = {}
        self._live: OrderedDict[tuple[str, str], Activation] = OrderedDict()
        self._roles = StaffRoles(pool)
        self._timer_failures = 0
        self._dead_timers = 0

    async def start(self) -> None:
        async with connection(self.pool) as conn:
            self.epochs = await store.take_leases(
                conn, self.shard_map.fleet, self.shard_map.logical_of(self.physical), self.owner
            )
        log.info("shard %s owns %d logical shards", self.owner, len(self.epochs))

    # ------------------------------------------------------------------ commands

    async def handle_batch(self, commands: list[Command]) -> list[Result]:
        """Group commit. Each entity's commands are decided one after another on its in-memory
        state (a chain, in arrival order), and every change of every entity in the batch is
        stored in one transaction: one lease-and-retry check, one commit - so a hot listing taking
        100 bookings in a batch pays for one commit, not 100. Nothing is answered before that
        commit; if it fails (or a command is a retry), the entities involved reload from
        Postgres as needed and their commands run one by one."""
        started = time.perf_counter()
        results: list[Result | None] = [None] * len(commands)
        queues: dict[tuple[str, str], list[int]] = {}
        # A command sent twice in one batch (a client retry that caught up with its first try) is
        # decided once; the copy gets the same answer, not one decided on the state it changed.
        first_of: dict[uuid.UUID, int] = {}
        copies: dict[int, int] = {}
        forged = await self._roles.forged(commands)
        for index, command in enumerate(commands):
            if command.command_id in first_of:
                copies[index] = first_of[command.command_id]
                continue
            first_of[command.command_id] = index
            refusal = self._refusal(command) or forged.get(index)
            if refusal is not None:
                results[index] = refusal
            else:
                queues.setdefault((command.kind, command.entity_id), []).append(index)
        activations = {key: self._activation(key) for key in queues}
        async with contextlib.AsyncExitStack() as held:
            for key in sorted(activations):  # a fixed order, so two batches never deadlock
                await held.enter_async_context(activations[key].lock)
                activations[key].last_used = time.monotonic()
            answered = await self._commit_chains(commands, queues, activations)
            for key, indices in queues.items():
                for index in indices:
                    if index in answered:
                        results[index] = answered[index]
                    else:
                        results[index] = await self._guarded_apply(commands[index], activations[key])
        self._evict_over_capacity()  # after the locks are released, or nothing could go
        for index, original in copies.items():
            results[index] = results[original]
        answers = [r if r is not None else Result.error(500, "internal_error", "No result.") for r in results]
        self.metrics.batch_done(commands, answers, time.perf_counter() - started)
        self.metrics.live_entities(len(self._live))
        return answers

    async def _commit_chains(
        self, commands: list[Command], queues: dict[tuple[str, str], list[int]],
        activations: dict[tuple[str, str], Activation],
    ) -> dict[int, Result]:
        """Decide each entity's commands in order on its in-memory state and commit all changes
        together. Returns the answers of the entities it handled; the others (timers, a shard
        not owned, a failed commit) are left to the one-by-one path."""
        answered: dict[int, Result] = {}
        changes: list[_Change] = []
        finals: dict[tuple[str, str], tuple[Any, int]] = {}
        chained: list[tuple[str, str]] = []
        for key, indices in queues.items():
            shard = logical_shard(*key)
            if shard not in self.epochs or any(_is_timer(commands[i]) for i in indices):
                continue
            kind, activation = self.kinds[key[0]], activations[key]
            try:
                await self._activate(kind, activation, key[1])
                outcomes, chain, final = self._decide_chain(kind, shard, activation,
                                                            [(i, commands[i]) for i in indices])
            except Exception:  # storage trouble or a bug: the one-by-one path reports it per command
                log.debug("chain of %s %s goes one by one", *key, exc_info=True)
                continue
            answered.update(outcomes)
            changes += chain
            chained.append(key)
            if chain:
                finals[key] = final
        # A retried command must get its first answer, not one decided on the state it already
        # changed: any command id stored before sends the whole group down the one-by-one path.
        ids = [commands[i].command_id for key in chained for i in queues[key]]
        try:
            if not changes:
                if ids and any(not r.ok for r in answered.values()) and await store.stored_results(self.pool, ids):
                    raise _GroupFallback
                return answered
            async with connection(self.pool) as conn, conn.transaction():
                epochs = {change.shard: self.epochs[change.shard] for change in changes}
                ours, retried = await store.check_group(conn, self.shard_map.fleet, epochs, ids)
                if not ours or retried:
                    raise _GroupFallback
                await self._write_changes(conn, changes)
        except Exception:
            # Whatever stops the group (a retry, a lost shard, one value the database refuses)
            # is sorted out command by command, from what Postgres holds.
            self.metrics.group_fallback()
            for key in chained:
                activations[key].loaded = activations[key].loaded and key not in finals
                for index in queues[key]:
                    answered.pop(index, None)
            return answered
        for key, (state, version) in finals.items():
            activations[key].state, activations[key].version = state, version
        return answered

    @staticmethod
    def _decide_chain(kind: EntityKind, shard: int, activation: Activation, commands: list[tuple[int, Command]]
                      ) -> tuple[dict[int, Result], list[_Change], tuple[Any, int]]:
        """Each command sees the state the previous one decided (not yet committed)."""
        state, version = activation.state, activation.version
        outcomes: dict[int, Result] = {}
        chain: list[_Change] = []
        for index, command in commands:
            try:
                decision = kind.decide(state, command)
            except Rejected as rejected:
                outcomes[index] = Result.error(rejected.status, rejected.code, rejected.detail)
                continue
            if not decision.changed:
                outcomes[index] = Result(ok=True, reply=decision.reply)
                continue
            change = _Change(command, kind, shard, activation, decision, version)
            chain.append(change)
            outcomes[index] = change.result
            state, version = decision.state, version + 1
        return outcomes, chain, (state, version)

    async def _write_changes(self, conn: asyncpg.Connection, changes: list[_Change]) -> None:
        """Store decided changes (inside the caller's transaction, leases already checked): the
        command ids with their results, the new states, the outbox events, the timers. Each kind
        stores all its entities' chains in one `save_group` call, so 100 changes - to one hot
        entity or to 100 entities - cost a handful of round trips, not hundreds."""
        await store.record_commands(conn, [
            (c.command.command_id, c.command.kind, c.command.entity_id, c.result.as_json()) for c in changes
        ])
        by_kind: dict[str, dict[str, list[tuple[Any, int]]]] = {}
        for change in changes:  # in decision order, so each entity's chain keeps its order
            by_kind.setdefault(change.command.kind, {}).setdefault(change.command.entity_id, []).append(
                (change.decision.state, change.version))
        for kind_name, chains in by_kind.items():
            await self.kinds[kind_name].save_group(conn, chains)
        await store.add_outbox_events(conn, [
            row for c in changes for row in self._outbox_rows(c.command, c.decision.events, c.version + 1)
        ])
        await self._write_timers(conn, changes)

    async def _activate(self, kind: EntityKind, activation: Activation, entity_id: str) -> None:
        if not activation.loaded:
            async with connection(self.pool) as conn:
                loaded = await kind.load(conn, entity_id)
            activation.state, activation.version = loaded if loaded is not None else (None, 0)
            # "Does not exist" is not cached: another entity's commit may create it (a listing
            # inserts its rentals), so the next command looks again.
            activation.loaded = loaded is not None

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
        except Exception as exc:
            if server_gone(exc) or isinstance(exc, OSError | TimeoutError):
                # An outage, not this command's fault: answered at once (the caller's client retries
                # after Retry-After with the same command id, which finds the outcome if the commit
                # got through after all). Connections the dead server left behind are replaced.
                self._live.pop(key, None)
                await self.pool.expire_connections()
                log.warning("database unavailable while handling %s: %s", command.name, type(exc).__name__)
                return Result.error(503, "database_unavailable", "The database is unavailable; retry shortly.")
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
            stored = (await store.stored_results(self.pool, [command.command_id])).get(command.command_id)
            if stored is not None:
                return Result.from_json(stored)
            if _is_timer(command):  # a timer the entity no longer cares about: spend it
                await self._consume_timer(shard, epoch, command)
            return Result.error(rejected.status, rejected.code, rejected.detail)
        if not decision.changed:
            if _is_timer(command):
                await self._consume_timer(shard, epoch, command)
            return Result(ok=True, reply=decision.reply)
        change = _Change(command, kind, shard, activation, decision, activation.version)
        try:
            async with connection(self.pool) as conn, conn.transaction():
                if not await store.check_leases(conn, self.shard_map.fleet, {shard: epoch}):
                    raise StaleOwner
                await self._write_changes(conn, [change])
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "processed_commands_pkey":
                raise
            stored = (await store.stored_results(self.pool, [command.command_id])).get(command.command_id)
            assert stored is not None
            if _is_timer(command):  # fired twice: the first firing stored the result, spend it
                await self._consume_timer(shard, epoch, command)
            return Result.from_json(stored)
        change.applied()
        return change.result

    async def _write_timers(self, conn: asyncpg.Connection, changes: list[_Change]) -> None:
        """Timers set or cancelled by the changes; for one timer name the last change wins."""
        final: dict[tuple[str, str, str], tuple[int, SetTimer | CancelTimer]] = {}
        for change in changes:
            command = change.command
            if _is_timer(command):
                await store.consume_timer(conn, command.kind, command.entity_id, _timer_name(command),
                                          command.command_id)
            for timer in change.decision.timers:
                final[(command.kind, command.entity_id, timer.name)] = (change.shard, timer)
        sets, cancels = [], []
        for (kind, entity_id, name), (shard, timer) in final.items():
            if isinstance(timer, SetTimer):
                sets.append((shard, kind, entity_id, name, timer.fire_at, timer.payload))
            else:
                cancels.append((kind, entity_id, name))
        if sets:
            await store.set_timers(conn, self.shard_map.fleet, sets)
        if cancels:
            await store.cancel_timers(conn, cancels)

    async def _consume_timer(self, shard: int, epoch: int, command: Command) -> None:
        async with connection(self.pool) as conn, conn.transaction():
            if not await store.check_leases(conn, self.shard_map.fleet, {shard: epoch}):
                raise StaleOwner
            await store.consume_timer(conn, command.kind, command.entity_id, _timer_name(command), command.command_id)

    async def fire_due_timers(self, limit: int = 100) -> int:
        """Fire the due timers of the entities this host owns, as commands; returns how many.
        Those whose command failed are put back with backoff (or dead-lettered), so the next poll
        reaches the timers due after them instead of firing the same failures again."""
        if not self.epochs:
            return 0
        rows = await store.due_timers(self.pool, self.shard_map.fleet, list(self.epochs), limit)
        if not rows:
            return 0
        commands = [
            Command(command_id=row["command_id"], kind=row["entity_kind"], entity_id=row["entity_id"],
                    name=f"{TIMER_PREFIX}{row['name']}", payload=row["payload"], actor_roles=frozenset({"system"}))
            for row in rows
        ]
        # Each timer's lease epoch as it is fired: a failure is recorded only if it is still ours.
        epochs = [self.epochs.get(logical_shard(c.kind, c.entity_id)) for c in commands]
        results = await self.handle_batch(commands)
        self.metrics.timers_fired(len(commands))
        await self._record_timer_failures(commands, epochs, results)
        return len(commands)

    async def _record_timer_failures(self, commands: list[Command], epochs: list[int | None],
                                     results: list[Result]) -> None:
        failures: list[timer_store.TimerFailure] = []
        for command, epoch, result in zip(commands, epochs, results, strict=True):
            outcome = timer_outcome(result)
            if outcome in (TimerOutcome.DONE, TimerOutcome.ELSEWHERE) or epoch is None:
                continue
            failures.append((command.kind, command.entity_id, _timer_name(command), command.command_id,
                             logical_shard(command.kind, command.entity_id), epoch, result.code, result.detail,
                             outcome is TimerOutcome.FAILED))
        if not failures:
            return
        policy = self.timer_policy
        # A refusal spent its timer while it was decided, so only timers still there come back.
        updated = await timer_store.record_failures(
            self.pool, self.shard_map.fleet, failures, backoff_secs=policy.backoff_secs,
            max_backoff_secs=policy.max_backoff_secs, max_attempts=policy.max_attempts,
            outage_delay_secs=policy.outage_delay_secs)
        self._timer_failures += len(updated)
        for row in updated:
            self.metrics.timer_failed(row["entity_kind"], row["last_error_code"] or "unknown")
            if row["state"] == "dead":
                log.error("timer %s of %s %s is dead after %d failed attempts (last: %s); "
                          "re-arm it with POST /api/v1/admin/timers/{id}/retry once the cause is fixed",
                          row["name"], row["entity_kind"], row["entity_id"], row["attempts"], row["last_error_code"])
        if any(row["state"] == "dead" for row in updated):
            await self.refresh_dead_timers()

    async def refresh_dead_timers(self) -> int:
        """Count the dead timers of the logical shards this host owns (for metrics and stats)."""
        self._dead_timers = await timer_store.count_dead(self.pool, self.shard_map.fleet, list(self.epochs))
        self.metrics.dead_timers(self._dead_timers)
        return self._dead_timers

    @staticmethod
    def _outbox_rows(command: Command, events: list[Any], version: int) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC).isoformat()
        rows = []
        for event in events:
            event_id = uuid.uuid4()
            kind, entity_id = event.about or (command.kind, command.entity_id)
            payload = {
                "event_id": str(event_id), "type": event.type, "kind": kind, "entity_id": entity_id,
                "version": event.version if event.version is not None else version, "occurred_at": now,
                "data": event.data,
            }
            subject = f"{kind}.{entity_id}.{event.type}"
            rows.append((event_id, subject, kind, entity_id, event.type, payload))
        return rows

    # ------------------------------------------------------------------ memory

    def _activation(self, key: tuple[str, str]) -> Activation:
        activation = self._live.get(key)
        if activation is None:
            activation = self._live[key] = Activation()
        self._live.move_to_end(key)
        return activation

    def _evict_over_capacity(self) -> None:
        if len(self._live) <= self.max_live:
            return
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
        return {"owner": self.owner, "logical_shards": len(self.epochs), "live_entities": len(self._live),
                "timer_failures": self._timer_failures, "dead_timers": self._dead_timers}

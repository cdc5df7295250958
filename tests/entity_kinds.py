"""Minimal entity kinds for testing the runtime itself: a named counter with a ceiling, and a kind
whose own storage is down.

Importable by Ray workers (they get the driver's sys.path), registered as "tests.entity_kinds:COUNTER".

The counter's `explode` timer is a poison timer: its command raises - a bug in the kind - for
`COUNTER`, and adds its amount for `FIXED_COUNTER`, the same kind once the bug is fixed (a host
built with it is the deploy with the fix)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from actors.commands import Command
from actors.entity import CancelTimer, Decision, Event, Rejected, SetTimer, VersionConflict

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS test_counters (
    id      text PRIMARY KEY,
    value   integer NOT NULL,
    version bigint NOT NULL
)"""


# Commands that set a timer, and the timer they set.
_TIMER_OF = {"add_later": "pending_add", "explode_later": "explode"}


class CounterKind:
    name = "counter"
    ceiling = 1_000_000

    def __init__(self, *, timer_bug: bool = True) -> None:
        self.timer_bug = timer_bug

    async def load(self, conn: asyncpg.Connection, entity_id: str) -> tuple[Any, int] | None:
        row = await conn.fetchrow("SELECT value, version FROM test_counters WHERE id = $1", entity_id)
        return (row["value"], row["version"]) if row else None

    def decide(self, state: Any, command: Command) -> Decision:
        value = state or 0
        if command.name == "get":
            return Decision(state=value, reply={"value": value}, changed=False)
        if command.name == "add":
            amount = int(command.payload["amount"])
            if value + amount > self.ceiling:
                raise Rejected(409, "ceiling_reached", "The counter would pass its ceiling.")
            new = value + amount
            return Decision(state=new, reply={"value": new}, events=[Event("added", {"amount": amount, "value": new})])
        if command.name == "set_raw":  # no checks: lets tests hand the database a value it refuses
            return Decision(state=command.payload["value"], reply={"value": command.payload["value"]})
        if command.name in _TIMER_OF:  # add_later, explode_later
            fire_at = datetime.fromisoformat(command.payload["at"])
            timer = SetTimer(_TIMER_OF[command.name], fire_at, {"amount": int(command.payload["amount"])})
            return Decision(state=value, timers=[timer], reply={"value": value})
        if command.name == "cancel_later":
            return Decision(state=value, timers=[CancelTimer("pending_add")], reply={"value": value})
        if command.name in ("timer:pending_add", "timer:explode"):
            return self._fired(value, command)
        raise Rejected(400, "unknown_command", command.name)

    def _fired(self, value: int, command: Command) -> Decision:
        if command.name == "timer:explode" and self.timer_bug:
            raise RuntimeError("a bug in the counter's explode timer")
        new = value + int(command.payload["amount"])
        return Decision(state=new, reply={"value": new}, events=[Event("added", {"amount": 0, "value": new})])

    async def save_group(self, conn: asyncpg.Connection, chains: dict[str, list[tuple[Any, int]]]) -> None:
        """One statement per counter: its last value, checked against the version before the chain."""
        for entity_id, chain in chains.items():
            state, expected_version, new_version = chain[-1][0], chain[0][1], chain[0][1] + len(chain)
            if expected_version == 0:
                result = await conn.execute(
                    "INSERT INTO test_counters (id, value, version) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    entity_id, state, new_version,
                )
                if result != "INSERT 0 1":
                    raise VersionConflict
                continue
            result = await conn.execute(
                "UPDATE test_counters SET value = $2, version = $4 WHERE id = $1 AND version = $3",
                entity_id, state, expected_version, new_version,
            )
            if result != "UPDATE 1":
                raise VersionConflict


class OfflineKind:
    """A kind whose storage is down: `load` connects to a port nobody listens on, as a kind backed
    by an unreachable database does, so every command on it is answered 503 by the runtime."""

    name = "offline"

    async def load(self, conn: asyncpg.Connection, entity_id: str) -> tuple[Any, int] | None:
        await asyncpg.connect("postgresql://sharehub@127.0.0.1:1/offline", timeout=5)
        raise AssertionError("port 1 answered")

    def decide(self, state: Any, command: Command) -> Decision:
        return Decision(state=state, reply={})

    async def save_group(self, conn: asyncpg.Connection, chains: dict[str, list[tuple[Any, int]]]) -> None:
        raise AssertionError("nothing is ever decided on an offline entity")


COUNTER = CounterKind()
FIXED_COUNTER = CounterKind(timer_bug=False)
OFFLINE = OfflineKind()
KIND_PATHS = ["tests.entity_kinds:COUNTER"]
# Fleets of their own, so test hosts never fence the platform's "entities" fleet or each other.
LOCAL_FLEET = "test-counters-local"
RAY_FLEET = "test-counters-ray"

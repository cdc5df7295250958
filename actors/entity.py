"""What an entity kind provides to the runtime.

The runtime owns concurrency, fencing, idempotency and the outbox; a kind owns its state, its
rules and its table:
- `load`: the current state and version from Postgres (None if the entity does not exist);
- `decide`: a pure function from (state, command) to a `Decision` - new state, events, reply,
  timers to set or cancel - or a `Rejected` with a status and code. A timer fires as the command
  `timer:<name>` (payload from the timer) on the same entity;
- `save_group`: store decided states of one or many entities in the caller's transaction. Each
  entity comes with its chain of (state, version it was decided from), in order; the row must
  still have the chain's first version (0 = insert) and ends with the last state at that
  version + the chain's length. One call for a whole group commit, so a kind can batch its
  statements across entities."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from actors.commands import Command


@dataclass(frozen=True)
class Event:
    """A past-tense fact, published as `<kind>.<entity id>.<type>` after commit. An entity that
    owns others (a listing owns its rentals) names the one the event is about in `about`, with
    that one's own version."""

    type: str
    data: dict[str, Any]
    about: tuple[str, str] | None = None  # (kind, entity id)
    version: int | None = None


@dataclass(frozen=True)
class SetTimer:
    """Fire command `timer:<name>` on this entity at `fire_at` (replaces a timer of that name)."""

    name: str
    fire_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelTimer:
    name: str


class Rejected(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Decision:
    state: Any
    events: list[Event] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    # Read-only commands (queries) change nothing and store nothing.
    changed: bool = True
    timers: list[SetTimer | CancelTimer] = field(default_factory=list)
    # Store the new state but answer with this refusal (e.g. a wrong handover code is counted).
    refusal: Rejected | None = None


class VersionConflict(Exception):
    """The row changed under us: someone else wrote it (only possible across owners)."""


class EntityKind(Protocol):
    name: str

    async def load(self, conn: asyncpg.Connection, entity_id: str) -> tuple[Any, int] | None: ...

    def decide(self, state: Any, command: Command) -> Decision: ...

    async def save_group(self, conn: asyncpg.Connection, chains: dict[str, list[tuple[Any, int]]]) -> None: ...


def load_kinds(paths: list[str]) -> dict[str, EntityKind]:
    """Kinds by name from "module:attribute" paths (importable in every Ray worker)."""
    kinds: dict[str, EntityKind] = {}
    for path in paths:
        module_name, _, attribute = path.partition(":")
        kind: EntityKind = getattr(importlib.import_module(module_name), attribute)
        kinds[kind.name] = kind
    return kinds

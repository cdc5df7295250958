"""Commands sent to entities and what comes back.

Plain dataclasses (cheap to pickle across the Ray boundary). A command carries its own id: the
caller retries with the same id and gets the first result back (effectively once)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    command_id: uuid.UUID
    kind: str
    entity_id: str
    name: str
    payload: dict[str, Any] = field(default_factory=dict)
    # Who asks (user id and roles), for the entity's own authorization rules.
    actor_id: str | None = None
    actor_roles: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Result:
    """`ok` with a `reply`, or an error with an HTTP-like status and a stable code."""

    ok: bool
    reply: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    code: str = ""
    detail: str = ""
    # True when the caller may resend the same command (the owner moved, a conflict, a crash).
    retryable: bool = False

    @classmethod
    def error(cls, status: int, code: str, detail: str, *, retryable: bool = False) -> Result:
        return cls(ok=False, status=status, code=code, detail=detail, retryable=retryable)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "reply": self.reply, "status": self.status, "code": self.code, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(ok=data["ok"], reply=data["reply"], status=data["status"], code=data["code"],
                   detail=data["detail"])

"""How a durable timer looks to admins (GET /api/v1/admin/timers and its retry)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def timer_view(row: dict[str, Any]) -> dict[str, Any]:
    """`id` is the timer's command id: a timer re-set by its entity gets a new one, so a retry
    names exactly the timer the admin looked at."""
    failed = row["last_failed_at"] is not None
    return {
        "id": str(row["command_id"]),
        "fleet": row["fleet"],
        "entity_kind": row["entity_kind"],
        "entity_id": row["entity_id"],
        "name": row["name"],
        "state": row["state"],
        "attempts": row["attempts"],
        "fire_at": _time(row["fire_at"]),
        "retry_at": _time(row["retry_at"]),
        "dead_at": _time(row["dead_at"]),
        "last_error": {
            "code": row["last_error_code"],
            "detail": row["last_error_detail"],
            "at": _time(row["last_failed_at"]),
        } if failed else None,
        "payload": row["payload"],
    }

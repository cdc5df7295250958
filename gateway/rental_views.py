"""How a rental looks on the wire, to its renter, its owner and moderators.

Periods go back in the client's vocabulary (first and last day, or two instants); the handover
code is shown to the owner only, while it is valid."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors.chat import room_id as chat_room_id
from actors.listing import rental_from_row
from actors.periods import RentalPeriod, wire_end
from actors.rental_machine import late_fee
from sharehub.security.tokens import AccessClaims


def viewer_role(rental: dict[str, Any], viewer: AccessClaims) -> str | None:
    """renter, owner or moderator - or None: then the rental does not exist for this viewer."""
    if viewer.user_id == rental["renter_id"]:
        return "renter"
    if viewer.user_id == rental["owner_id"]:
        return "owner"
    if {"moderator", "admin"} & viewer.roles:
        return "moderator"
    return None


def _extension(extension: dict[str, Any] | None, unit: str) -> dict[str, Any] | None:
    """A waiting extension, its end said like the rental's (the last day, or the instant)."""
    if extension is None:
        return None
    return {**extension, "end": wire_end(unit, datetime.fromisoformat(extension["end"]))}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def rental_view(rental: dict[str, Any], role: str, *, now: datetime,
                history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    details = rental["details"]
    period = RentalPeriod(rental["rental_unit"], rental["start_at"], rental["end_at"])
    view: dict[str, Any] = {
        "id": str(rental["id"]),
        "listing_id": str(rental["listing_id"]),
        "listing_title": rental.get("listing_title"),
        "renter_id": str(rental["renter_id"]),
        "owner_id": str(rental["owner_id"]),
        # The pair's chat room (the inquiry before, the rental's steps as system messages).
        "chat_id": str(chat_room_id(rental["listing_id"], rental["renter_id"])),
        "status": rental["status"],
        "rental_unit": rental["rental_unit"],
        "quantity": rental["quantity"],
        **period.wire(),
        "units": period.units,
        "held_until": rental["held_until"].isoformat(),
        "quote": {k: v for k, v in rental["quote"].items() if k != "terms"},
        "total": rental["total"],
        "currency": "RUB",
        "expires_at": _iso(rental["expires_at"]),
        "extension": _extension(details.get("extension"), rental["rental_unit"]),
        "extensions": [{"from": wire_end(rental["rental_unit"], datetime.fromisoformat(e["from"])),
                        "to": wire_end(rental["rental_unit"], datetime.fromisoformat(e["to"]))}
                       for e in details.get("extensions", [])],
        "cancellation": details.get("cancellation"),
        "late_fee": details.get("late_fee", _accrued_late_fee(rental, now)),
        "handover_code": details.get("handover_code") if role == "owner" else None,
        "version": rental["version"],
        "created_at": rental["created_at"].isoformat(),
        "updated_at": rental["updated_at"].isoformat(),
    }
    if history is not None:
        view["history"] = [
            {"seq": t["seq"], "command": t["command"], "from": t["from_status"], "to": t["to_status"],
             "by": t["actor_role"], "actor_id": str(t["actor_id"]) if t["actor_id"] else None,
             "data": t["data"], "at": t["at"].isoformat()}
            for t in history
        ]
    return view


def _accrued_late_fee(rental: dict[str, Any], now: datetime) -> int:
    """While overdue, the fee so far (it is fixed when the item comes back)."""
    if rental["status"] != "overdue":
        return 0
    return late_fee(rental_from_row(rental), now)

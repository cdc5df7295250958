"""The rental state machine, declared as data, and the pure rules around it.

    requested -> accepted | declined | cancelled | expired     (instant book starts at accepted)
    accepted  -> active (handover: owner issues a one-time code, renter confirms it) | cancelled
    active    -> returned (owner confirms receipt) | overdue (timer: end + grace)
    overdue   -> returned
    returned  -> completed (owner confirms, or the inspection window ends)

An extension (renter asks for a later end, owner accepts or declines) keeps the status. Payment
states will slot in between `accepted` and `active` as new rows of TRANSITIONS.

The machine knows nothing of the calendar: a transition says what happens to the rental's held
units (`HoldChange`) and the listing entity, which owns the calendar, carries it out in the same
decision - so a rental's status and its listing's calendar always commit together."""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from actors.periods import UNIT_LENGTH, RentalPeriod
from actors.quotes import refund_amount, refund_percent

Role = Literal["renter", "owner", "moderator", "system"]

OPEN_STATES = frozenset({"requested", "accepted", "active", "overdue", "returned"})
TERMINAL_STATES = frozenset({"declined", "cancelled", "expired", "completed"})
STATES = OPEN_STATES | TERMINAL_STATES

REQUEST_TTL = timedelta(hours=24)
# A request for a period that has already begun (a day rental for today) gets a short answer window.
STARTED_REQUEST_TTL = timedelta(hours=2)
OVERDUE_GRACE = {"day": timedelta(hours=3), "hour": timedelta(minutes=30)}
INSPECTION_WINDOW = timedelta(hours=48)
HANDOVER_CODE_ATTEMPTS = 5


@dataclass(frozen=True)
class Transition:
    command: str
    sources: frozenset[str]
    # None: the status stays (the command changes something else, e.g. an extension).
    target: str | None
    who: frozenset[Role]
    # The timers (by name) this transition sets and cancels on the rental.
    sets: tuple[str, ...] = ()
    cancels: tuple[str, ...] = ()


def _t(command: str, sources: set[str], target: str | None, who: set[Role], *,
       sets: tuple[str, ...] = (), cancels: tuple[str, ...] = ()) -> Transition:
    return Transition(command, frozenset(sources), target, frozenset(who), sets, cancels)


TRANSITIONS: tuple[Transition, ...] = (
    _t("accept", {"requested"}, "accepted", {"owner"}, cancels=("expire",)),
    _t("decline", {"requested"}, "declined", {"owner"}, cancels=("expire",)),
    _t("cancel", {"requested"}, "cancelled", {"renter", "moderator"}, cancels=("expire",)),
    _t("cancel", {"accepted"}, "cancelled", {"renter", "owner", "moderator"}),
    _t("expire", {"requested"}, "expired", {"system"}),
    _t("handover", {"accepted"}, None, {"owner"}),
    _t("confirm_handover", {"accepted"}, "active", {"renter"}, sets=("overdue",)),
    _t("mark_overdue", {"active"}, "overdue", {"system"}),
    _t("return", {"active", "overdue"}, "returned", {"owner"}, sets=("complete",), cancels=("overdue",)),
    _t("complete", {"returned"}, "completed", {"owner", "system"}, cancels=("complete",)),
    _t("request_extension", {"accepted", "active"}, None, {"renter"}),
    _t("accept_extension", {"accepted", "active"}, None, {"owner"}),
    _t("decline_extension", {"accepted", "active"}, None, {"owner"}),
)
COMMANDS = frozenset(t.command for t in TRANSITIONS)
# The timer names a rental uses and the command each one fires.
TIMER_COMMANDS = {"expire": "expire", "overdue": "mark_overdue", "complete": "complete"}


class TransitionRefused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class Rental:
    id: str
    listing_id: str
    renter_id: str
    owner_id: str
    status: str
    rental_unit: str
    quantity: int
    start: datetime
    end: datetime
    held_until: datetime
    unit_numbers: tuple[int, ...]
    quote: dict[str, Any]
    expires_at: datetime | None
    # Treated as immutable: every change builds a new dict.
    details: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    seq: int = 0

    @property
    def period(self) -> RentalPeriod:
        return RentalPeriod(self.rental_unit, self.start, self.end)


@dataclass(frozen=True)
class HoldChange:
    """What a transition does to the units the rental holds: free them all, give them back from
    `until` on (early return), or hold them longer (extension; the listing checks they are free)."""

    kind: Literal["release", "shorten", "extend"]
    until: datetime | None = None


@dataclass(frozen=True)
class Step:
    """The outcome of one command on a rental."""

    rental: Rental
    transition: Transition
    event_type: str
    data: dict[str, Any] = field(default_factory=dict)
    hold: HoldChange | None = None
    timers: dict[str, datetime] = field(default_factory=dict)  # name -> fire at
    # Only the owner sees the handover code; it is in the owner's reply, never in an event.
    private_reply: dict[str, Any] = field(default_factory=dict)
    # A stored but refused step (a wrong handover code): the rental keeps its status.
    refusal: str | None = None


def find_transition(rental: Rental, command: str, role: Role) -> Transition:
    """The transition `role` may fire with `command` now, or why not (409 wrong state, 403 role)."""
    candidates = [t for t in TRANSITIONS if t.command == command and rental.status in t.sources]
    if not candidates:
        raise TransitionRefused(409, "invalid_transition",
                                f"The rental is {rental.status}: {command!r} does not apply.")
    for transition in candidates:
        if role in transition.who:
            return transition
    raise TransitionRefused(403, "forbidden", f"The {role} of a rental cannot {command} it.")


def request_expiry(start: datetime, end: datetime, now: datetime) -> datetime:
    """A request holds its dates for REQUEST_TTL, never past the start; one for a period already
    under way (a day rental for today) gets a short window, never past the end."""
    if start > now:
        return min(now + REQUEST_TTL, start)
    return min(now + STARTED_REQUEST_TTL, end)


def late_fee(rental: Rental, returned_at: datetime) -> int:
    """Per started unit after the end, once the grace period has passed."""
    late = returned_at - rental.end
    if late <= OVERDUE_GRACE[rental.rental_unit]:
        return 0
    units = math.ceil(late / UNIT_LENGTH[rental.rental_unit])
    return int(units * rental.details["late_fee_per_unit"])


@dataclass
class _Draft:
    """The working copy one command's effect fills in."""

    rental: Rental
    command: str
    role: Role
    payload: dict[str, Any]
    now: datetime
    buffer: timedelta
    requote: Callable[[RentalPeriod], dict[str, Any]]
    details: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    hold: HoldChange | None = None
    event_type: str = "state_changed"
    private: dict[str, Any] = field(default_factory=dict)
    refusal: str | None = None


def _on_answer(draft: _Draft) -> None:  # accept, decline
    verb = "declined" if draft.command == "decline" else "accepted"
    draft.details[f"{verb}_at"] = draft.now.isoformat()
    if verb == "declined":
        if draft.payload.get("reason"):
            draft.details["decline_reason"] = draft.data["reason"] = draft.payload["reason"]
        draft.hold = HoldChange("release")


def _on_expire(draft: _Draft) -> None:
    draft.hold = HoldChange("release")


def _on_cancel(draft: _Draft) -> None:
    cancellation = _cancellation(draft.rental, draft.role, draft.now)
    if draft.payload.get("reason"):
        cancellation["reason"] = draft.payload["reason"]
    draft.details["cancellation"] = draft.data = cancellation
    draft.hold = HoldChange("release")


def _on_handover(draft: _Draft) -> None:
    code = f"{secrets.randbelow(1_000_000):06d}"
    draft.details.update(handover_code=code, handover_attempts=0, handover_issued_at=draft.now.isoformat())
    draft.private = {"handover_code": code}
    draft.event_type = "handover_code_issued"


def _on_confirm_handover(draft: _Draft) -> None:
    draft.details, draft.refusal = _check_handover_code(draft.details, str(draft.payload.get("code", "")))
    if draft.refusal is None:
        draft.details["active_at"] = draft.now.isoformat()


def _on_mark_overdue(draft: _Draft) -> None:
    draft.details["overdue_at"] = draft.now.isoformat()


def _on_return(draft: _Draft) -> None:
    rental, now = draft.rental, draft.now
    fee = late_fee(rental, now)
    draft.details.update(returned_at=now.isoformat(), late_fee=fee)
    draft.data["late_fee"] = fee
    if now + draft.buffer < rental.held_until:  # back early: the rest of the period is free again
        until = max(now, rental.start) + draft.buffer
        if until > rental.start:
            draft.hold = HoldChange("shorten", until)
            draft.changes["held_until"] = until
        else:  # back before it even began, with no buffer to keep: nothing is held any more
            draft.hold = HoldChange("release")


def _on_complete(draft: _Draft) -> None:
    draft.details["completed_at"] = draft.now.isoformat()


def _on_request_extension(draft: _Draft) -> None:
    new_end: datetime = draft.payload["end"]
    if new_end <= draft.rental.end:
        raise TransitionRefused(422, "validation_failed", "An extension must end after the current end.")
    draft.details["extension"] = {"end": new_end.isoformat(), "requested_at": draft.now.isoformat()}
    draft.data = {"end": new_end.isoformat()}
    draft.event_type = "extension_requested"


def _on_extension_answer(draft: _Draft) -> None:  # accept_extension, decline_extension
    extension = draft.details.pop("extension", None)
    if extension is None:
        raise TransitionRefused(409, "no_extension_requested", "The renter has not asked for an extension.")
    draft.data = {"end": extension["end"]}
    if draft.command == "decline_extension":
        draft.event_type = "extension_declined"
        return
    rental = draft.rental
    new_end = datetime.fromisoformat(extension["end"])
    new_quote = draft.requote(RentalPeriod(rental.rental_unit, rental.start, new_end))
    draft.data["total"] = new_quote["total"]
    draft.changes.update(end=new_end, held_until=new_end + draft.buffer, quote=new_quote)
    draft.hold = HoldChange("extend", new_end + draft.buffer)
    draft.details["extensions"] = [*draft.details.get("extensions", []),
                                   {"from": rental.end.isoformat(), "to": extension["end"]}]
    draft.event_type = "extended"


# What each command does besides moving the status (the transition rows above say who and when).
EFFECTS: dict[str, Callable[[_Draft], None]] = {
    "accept": _on_answer, "decline": _on_answer, "cancel": _on_cancel, "expire": _on_expire,
    "handover": _on_handover, "confirm_handover": _on_confirm_handover, "mark_overdue": _on_mark_overdue,
    "return": _on_return, "complete": _on_complete, "request_extension": _on_request_extension,
    "accept_extension": _on_extension_answer, "decline_extension": _on_extension_answer,
}


def _no_requote(period: RentalPeriod) -> dict[str, Any]:
    raise TransitionRefused(409, "cannot_requote", "This rental cannot be priced again.")


def apply(rental: Rental, command: str, role: Role, payload: dict[str, Any], now: datetime, *,
          buffer: timedelta, requote: Callable[[RentalPeriod], dict[str, Any]] = _no_requote) -> Step:
    """Fire `command` on `rental` as `role`. `requote(period)` prices an extension."""
    transition = find_transition(rental, command, role)
    draft = _Draft(rental, command, role, payload, now, buffer, requote, dict(rental.details))
    EFFECTS[command](draft)
    if draft.refusal is not None:
        # The failed try is stored (it counts) but the rental does not move.
        stored = dataclasses.replace(rental, details=draft.details, version=rental.version + 1)
        return Step(stored, transition, "", refusal=draft.refusal)
    status = transition.target or rental.status
    if rental.status == "requested" and status != "requested":
        draft.changes["expires_at"] = None  # answered (or expired): no deadline any more
    data = {"from": rental.status, "to": status, "by": role, **draft.data} if transition.target else draft.data
    new = dataclasses.replace(rental, status=status, details=draft.details, version=rental.version + 1,
                              seq=rental.seq + 1, **draft.changes)
    timers = {name: _timer_at(new, name, now) for name in transition.sets}
    if command == "accept_extension" and new.status == "active":
        timers["overdue"] = _timer_at(new, "overdue", now)  # the end moved
    return Step(new, transition, draft.event_type, data=data, hold=draft.hold, timers=timers,
                private_reply=draft.private)


def _timer_at(rental: Rental, name: str, now: datetime) -> datetime:
    if name == "overdue":
        return max(now, rental.end + OVERDUE_GRACE[rental.rental_unit])
    if name == "complete":
        return now + INSPECTION_WINDOW
    raise ValueError(name)


def _cancellation(rental: Rental, role: Role, now: datetime) -> dict[str, Any]:
    """Who cancelled and what the renter gets back: the policy's refund when the renter cancels
    an accepted rental, everything otherwise; an owner cancelling an accepted rental gets a
    penalty mark (it counts against them in search and reviews)."""
    if role == "renter" and rental.status == "accepted":
        hours_before = (rental.start - now).total_seconds() / 3600
        percent = refund_percent(rental.quote["cancellation_tiers"], hours_before)
    else:
        percent = 100
    return {
        "by": role,
        "refund_percent": percent,
        "refund_amount": refund_amount(rental.quote, percent),
        "owner_penalty": role == "owner",
        "at": now.isoformat(),
    }


def _check_handover_code(details: dict[str, Any], code: str) -> tuple[dict[str, Any], str | None]:
    """(details, refusal): the code must have been issued and match; a few wrong tries burn it."""
    expected = details.get("handover_code")
    if expected is None:
        return details, "no_handover_code"
    if secrets.compare_digest(expected, code):
        return {k: v for k, v in details.items() if k not in ("handover_code", "handover_attempts")}, None
    attempts = details.get("handover_attempts", 0) + 1
    if attempts >= HANDOVER_CODE_ATTEMPTS:
        burnt = {k: v for k, v in details.items() if k not in ("handover_code", "handover_attempts")}
        return burnt, "handover_code_burnt"
    return {**details, "handover_attempts": attempts}, "wrong_handover_code"

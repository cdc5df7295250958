"""Booking commands of the listing entity: a request for dates, and every later step of a rental.

The listing owns its calendar, so it decides bookings alone, in memory, one command at a time;
a rental's status and the units it holds change in the same decision and hence in the same
commit. Rentals that can still change live in the listing's memory (`Listing.rentals`); finished
ones are only in Postgres. The rental rules themselves are in actors/rental_machine.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from actors import rental_machine as machine
from actors.calendar import Calendar, Hold
from actors.commands import Command
from actors.entity import CancelTimer, Decision, Event, Rejected, SetTimer
from actors.periods import UNIT_LENGTH, PeriodError, RentalPeriod, day_start, local_day, now_utc, overlaps
from actors.quotes import PricingTerms, quote

if TYPE_CHECKING:
    from actors.listing import Listing

BOOKING_HORIZON = timedelta(days=365)
RENTAL_COMMAND_PREFIX = "rental."
RENTAL_TIMER_PREFIX = "timer:rental."


@dataclass(frozen=True)
class RentalWrite:
    """What the listing's save must store for one rental changed by the decision."""

    rental: machine.Rental
    new: bool
    transition: dict[str, Any] | None
    hold: Literal["insert", "release", "move"] | None


def timer_name(name: str, rental_id: str) -> str:
    return f"rental.{name}#{rental_id}"


def _terms(listing: Listing) -> PricingTerms:
    return PricingTerms(listing.price_per_unit, listing.deposit, listing.discounts, listing.price_overrides)


def _blocked(listing: Listing, start: datetime, end: datetime) -> bool:
    for period in listing.blocked_periods:
        blocked_from = day_start(date.fromisoformat(period["start"]))
        blocked_to = day_start(date.fromisoformat(period["end"]) + timedelta(days=1))
        if overlaps(start, end, blocked_from, blocked_to):
            return True
    return False


def _invalid(code: str, detail: str) -> Rejected:
    return Rejected(422, code, detail)


def _check_period_rules(listing: Listing, period: RentalPeriod, now: datetime) -> None:
    units = period.units
    if units < listing.min_units:
        raise _invalid("duration_too_short", f"The minimum is {listing.min_units} {period.unit}(s).")
    if listing.max_units is not None and units > listing.max_units:
        raise _invalid("duration_too_long", f"The maximum is {listing.max_units} {period.unit}(s).")
    if period.unit == "day" and local_day(period.start) < local_day(now):
        raise _invalid("start_in_past", "The first day has already passed.")
    if period.unit == "hour" and period.start < now:
        raise _invalid("start_in_past", "The start has already passed.")
    if listing.min_notice_hours and period.start < now + timedelta(hours=listing.min_notice_hours):
        raise _invalid("too_soon", f"The owner needs {listing.min_notice_hours} hours' notice.")
    if period.start > now + BOOKING_HORIZON or period.end > now + BOOKING_HORIZON + UNIT_LENGTH[period.unit]:
        raise _invalid("too_far_ahead", "Bookings open at most a year ahead, start and end.")


def request_booking(listing: Listing, command: Command, policies: Mapping[str, Any]) -> Decision:
    now = now_utc()
    payload = command.payload
    if listing.status not in ("published", "paused") and command.actor_id != listing.owner_id:
        raise Rejected(404, "not_found", "No such listing.")  # drafts and archived ones are not public
    if listing.status != "published":
        raise Rejected(409, "listing_unavailable", "This listing is not taking bookings.")
    if command.actor_id == listing.owner_id:
        raise Rejected(409, "own_listing", "You cannot rent your own listing.")
    rental_id = str(payload["rental_id"])
    if rental_id in listing.rentals:
        raise Rejected(409, "already_exists", "This rental already exists.")
    try:
        period = RentalPeriod.parse(listing.rental_unit, str(payload["start"]), str(payload["end"]))
    except PeriodError as exc:
        raise _invalid("invalid_period", str(exc)) from None
    quantity = int(payload.get("quantity", 1))
    if quantity > listing.quantity:
        raise _invalid("quantity_too_large", f"This listing has {listing.quantity} item(s).")
    _check_period_rules(listing, period, now)
    held_until = period.end + timedelta(hours=listing.buffer_hours)
    free = listing.calendar.free_units(listing.quantity, period.start, held_until, wanted=quantity)
    if len(free) < quantity or _blocked(listing, period.start, period.end):
        raise Rejected(409, "dates_unavailable", "These dates are no longer available.")
    units = tuple(free[:quantity])

    terms = _terms(listing)
    priced = quote(terms, period, quantity)
    priced["terms"] = {"price_per_unit": terms.price_per_unit, "deposit": terms.deposit,
                       "discounts": list(terms.discounts), "price_overrides": list(terms.price_overrides)}
    priced["cancellation_policy"] = listing.cancellation_policy
    priced["cancellation_tiers"] = policies[listing.cancellation_policy]
    status = "accepted" if listing.instant_book else "requested"
    expires_at = machine.request_expiry(period.start, period.end, now) if status == "requested" else None
    details: dict[str, Any] = {"late_fee_per_unit": listing.price_per_unit * quantity, "requested_at": now.isoformat()}
    if status == "accepted":
        details["accepted_at"] = now.isoformat()
    assert command.actor_id is not None
    rental = machine.Rental(
        id=rental_id, listing_id=listing.id, renter_id=command.actor_id, owner_id=listing.owner_id, status=status,
        rental_unit=listing.rental_unit, quantity=quantity, start=period.start, end=period.end,
        held_until=held_until, unit_numbers=units, quote=priced, expires_at=expires_at, details=details,
        version=1, seq=1,
    )
    transition = _transition_row(rental, "request", None, "renter", actor_id=command.actor_id, at=now,
                                 data={"instant_book": listing.instant_book})
    new_listing = dataclasses.replace(
        listing,
        rentals=listing.rentals.set(rental_id, rental),
        calendar=listing.calendar.with_hold(units, Hold(period.start, held_until, rental_id)),
        first_publication=False, rental_writes=(RentalWrite(rental, True, transition, "insert"),),
    )
    events = [
        Event("state_changed", {"from": None, "to": status, "by": "renter", **_parties(listing, rental),
                                **period.wire(), "quantity": quantity, "total": priced["total"]},
              about=("rental", rental_id), version=1),
        _availability_event(rental, "held"),
    ]
    timers: list[SetTimer | CancelTimer] = []
    if expires_at is not None:
        timers.append(SetTimer(timer_name("expire", rental_id), expires_at, {"rental_id": rental_id}))
    return Decision(state=new_listing, events=events, timers=timers,
                    reply={"rental_id": rental_id, "status": status, "quote": priced})


def _parties(listing: Listing, rental: machine.Rental) -> dict[str, str]:
    """Every rental event names its listing and both parties: the chat room and the
    notifications consumer act on the event alone."""
    return {"listing_id": listing.id, "renter_id": rental.renter_id, "owner_id": listing.owner_id}


def _availability_event(rental: machine.Rental, change: str) -> Event:
    return Event("availability_changed", {"change": change, "rental_id": rental.id,
                                          "start": rental.start.isoformat(), "until": rental.held_until.isoformat(),
                                          "units": len(rental.unit_numbers),
                                          "unit_numbers": list(rental.unit_numbers)})


def _transition_row(rental: machine.Rental, command: str, from_status: str | None, role: str, *,
                    actor_id: str | None, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"rental_id": rental.id, "seq": rental.seq, "command": command, "from_status": from_status,
            "to_status": rental.status, "actor_id": actor_id if role != "system" else None,
            "actor_role": role, "data": data, "at": at}


def _role(listing: Listing, rental: machine.Rental, command: Command, timer: bool) -> machine.Role:
    if timer:
        return "system"
    if command.actor_id == rental.renter_id:
        return "renter"
    if command.actor_id == listing.owner_id:
        return "owner"
    if {"moderator", "admin"} & command.actor_roles:
        return "moderator"
    raise Rejected(404, "not_found", "No such rental.")


def parse_command(command: Command) -> tuple[str, str, bool]:
    """(machine command, rental id, fired by a timer)."""
    if command.name.startswith(RENTAL_TIMER_PREFIX):
        timer, _, rental_id = command.name.removeprefix(RENTAL_TIMER_PREFIX).partition("#")
        return machine.TIMER_COMMANDS.get(timer, timer), rental_id, True
    return command.name.removeprefix(RENTAL_COMMAND_PREFIX), str(command.payload.get("rental_id", "")), False


def _extension_end(rental: machine.Rental, raw: str) -> datetime:
    try:
        if rental.rental_unit == "day":
            return day_start(date.fromisoformat(raw) + timedelta(days=1))
        return RentalPeriod.for_hours(rental.start, datetime.fromisoformat(raw)).end
    except (ValueError, OverflowError, PeriodError) as exc:
        raise _invalid("invalid_period", f"Not a valid end for this rental: {exc}") from None


def rental_command(listing: Listing, command: Command) -> Decision:
    now = now_utc()
    name, rental_id, timer = parse_command(command)
    if name not in machine.COMMANDS:
        raise Rejected(400, "unknown_command", f"Rentals do not understand {name!r}.")
    rental = listing.rentals.get(rental_id)
    if rental is None:
        raise Rejected(409, "invalid_transition", "This rental is closed.")
    role = _role(listing, rental, command, timer)
    payload = dict(command.payload)
    if name == "request_extension":
        payload["end"] = _extension_end(rental, str(payload.get("end", "")))
        if payload["end"] > now_utc() + BOOKING_HORIZON + UNIT_LENGTH[rental.rental_unit]:
            raise _invalid("too_far_ahead", "Bookings open at most a year ahead, start and end.")
        if listing.max_units is not None and RentalPeriod(rental.rental_unit, rental.start, payload["end"]).units > \
                listing.max_units:
            raise _invalid("duration_too_long", f"This listing is rented for at most {listing.max_units} units.")
    buffer = timedelta(hours=listing.buffer_hours)
    try:
        step = machine.apply(rental, name, role, payload, now, buffer=buffer,
                             requote=lambda period: _requote(rental, period))
    except machine.TransitionRefused as refused:
        raise Rejected(refused.status, refused.code, refused.detail) from None
    new = step.rental
    if step.refusal is not None:
        stored = dataclasses.replace(listing, rentals=listing.rentals.set(rental_id, new),
                                     first_publication=False, rental_writes=(RentalWrite(new, False, None, None),))
        return Decision(state=stored, refusal=Rejected(422, step.refusal, _HANDOVER_REFUSALS[step.refusal]))

    calendar, hold_write = _carry_out_hold(listing, rental, step)
    rentals = listing.rentals.set(rental_id, new) if new.status in machine.OPEN_STATES \
        else listing.rentals.delete(rental_id)
    transition = _transition_row(new, name, rental.status, role, actor_id=command.actor_id, at=now, data=step.data)
    state = dataclasses.replace(listing, rentals=rentals, calendar=calendar, first_publication=False,
                                rental_writes=(RentalWrite(new, False, transition, hold_write),))
    events = [Event(step.event_type, {**step.data, **_parties(listing, new)}, about=("rental", rental_id),
                    version=new.version)]
    if hold_write is not None:
        events.append(_availability_event(new, "released" if hold_write == "release" else "moved"))
    timers: list[SetTimer | CancelTimer] = [CancelTimer(timer_name(t, rental_id)) for t in step.transition.cancels]
    timers += [SetTimer(timer_name(t, rental_id), at, {"rental_id": rental_id}) for t, at in step.timers.items()]
    return Decision(state=state, events=events, timers=timers,
                    reply={"rental_id": rental_id, "status": new.status, **step.private_reply})


def _carry_out_hold(listing: Listing, rental: machine.Rental, step: machine.Step
                    ) -> tuple[Calendar, Literal["release", "move"] | None]:
    """The step's change to the held units, on the calendar and as a write for `save`."""
    hold = step.hold
    if hold is None:
        return listing.calendar, None
    if hold.kind == "release":
        return listing.calendar.without(rental.unit_numbers, rental.id), "release"
    assert hold.until is not None
    if hold.kind == "extend":
        _check_extension_free(listing, rental, hold.until, step.rental.end)
    return listing.calendar.moved(rental.unit_numbers, rental.id, hold.until), "move"


_HANDOVER_REFUSALS = {
    "no_handover_code": "The owner has not issued a handover code yet.",
    "wrong_handover_code": "This is not the handover code.",
    "handover_code_burnt": "Too many wrong codes: the owner must issue a new one.",
}


def _check_extension_free(listing: Listing, rental: machine.Rental, until: datetime, end: datetime) -> None:
    """The same units must be free from the current hold's end to the new one (it is the same
    physical item), and no blocked day may fall in the added time."""
    free = all(listing.calendar.is_free(unit, rental.held_until, until) for unit in rental.unit_numbers)
    if not free or _blocked(listing, rental.end, end):
        raise Rejected(409, "dates_unavailable", "The item is not free for the extra time.")


def _requote(rental: machine.Rental, period: RentalPeriod) -> dict[str, Any]:
    """An extension is priced with the terms agreed at booking (a longer stay may reach a
    bigger discount), never with prices the owner changed since."""
    agreed = rental.quote["terms"]
    terms = PricingTerms(agreed["price_per_unit"], agreed["deposit"], agreed["discounts"], agreed["price_overrides"])
    priced = quote(terms, period, rental.quantity)
    return {**priced, "terms": agreed, "cancellation_policy": rental.quote["cancellation_policy"],
            "cancellation_tiers": rental.quote["cancellation_tiers"]}

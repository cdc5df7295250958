"""Which listings are booked out for some dates, from the listing entities' events.

A search for "free on 5-7 December" must leave out listings with no unit free for the whole
period, and must not scan bookings in Postgres per query. Each replica keeps the calendars in
memory instead: loaded once from a Postgres snapshot, then moved by the `availability_changed`
events each listing emits (a rental's units held, moved or released; the owner's blocked
periods). An event the snapshot already reflects - its channel seq is at or below the listing's
seq in the snapshot - is skipped, so loading and following the stream overlap safely.

A unit is free for a period when none of its holds overlaps it (the calendar of actors/calendar.py,
the one the entity books with). To avoid checking every listing per query, each listing is
counted in a bucket per day (Moscow time) it has anything on; only listings in the buckets of the
asked days are checked. The answer for each period searched lately is kept and updated listing by
listing as events arrive, so a stream of bookings does not make every search start over."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from actors.calendar import Calendar, Hold
from actors.periods import LISTING_TIME_ZONE, day_start

Seq = tuple[str, int]  # (channel epoch, seq): the position of an event in its listing's channel
_NEVER: Seq = ("", -1)
_CACHED_PERIODS = 64


@dataclass
class _Listing:
    blocked: tuple[tuple[datetime, datetime], ...] = ()
    calendar: Calendar = field(default_factory=Calendar)
    # rental id -> (unit numbers, start, until): what a release or a move has to take back.
    holds: dict[str, tuple[tuple[int, ...], datetime, datetime]] = field(default_factory=dict)
    as_of: Seq = _NEVER


@dataclass
class _Period:
    start: datetime
    end: datetime
    keys: set[int]
    frozen: frozenset[int] | None = None  # what the last search got; remade after a change


def _days(start: datetime, until: datetime) -> Iterable[date]:
    first = start.astimezone(LISTING_TIME_ZONE).date()
    last = (until - timedelta(microseconds=1)).astimezone(LISTING_TIME_ZONE).date()
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def blocked_ranges(periods: Iterable[Mapping[str, str]]) -> tuple[tuple[datetime, datetime], ...]:
    """Owner-blocked dates (`{"start": "2026-12-01", "end": "2026-12-03"}`, both days included)."""
    return tuple(
        (day_start(date.fromisoformat(p["start"])), day_start(date.fromisoformat(p["end"]) + timedelta(days=1)))
        for p in periods
    )


class AvailabilityBook:
    def __init__(self) -> None:
        # Only listings with something on their calendar have an entry; quantities only when not 1.
        self._listings: dict[int, _Listing] = {}
        self._quantity: dict[int, int] = {}
        self._by_day: dict[date, dict[int, int]] = {}  # day -> {listing key: things on that day}
        # The periods searched lately, each kept up to date as calendars change.
        self._periods: OrderedDict[tuple[datetime, datetime], _Period] = OrderedDict()

    def __len__(self) -> int:
        """Listings with something on their calendar."""
        return len(self._listings)

    # ------------------------------------------------------------------ changes

    def load(self, key: int, *, quantity: int, blocked_periods: Iterable[Mapping[str, str]],
             holds: Iterable[tuple[str, int, datetime, datetime]], as_of: Seq) -> None:
        """A listing as a snapshot saw it: holds are (rental id, unit, start, until) rows."""
        self.forget(key)
        self.set_quantity(key, quantity)
        holds, blocked_periods = list(holds), list(blocked_periods)
        if not holds and not blocked_periods:
            return  # nothing on its calendar; events after the snapshot position replay in order
        listing = self._listings[key] = _Listing(as_of=as_of)
        self._set_blocked(key, listing, blocked_ranges(blocked_periods))
        by_rental: dict[str, tuple[list[int], datetime, datetime]] = {}
        for rental_id, unit, start, until in holds:
            by_rental.setdefault(rental_id, ([], start, until))[0].append(unit)
        for rental_id, (units, start, until) in by_rental.items():
            self._hold(key, listing, rental_id, (tuple(sorted(units)), start, until))
        self._changed(key)

    def set_quantity(self, key: int, quantity: int) -> None:
        if self._quantity.get(key, 1) != quantity:
            if quantity == 1:
                del self._quantity[key]
            else:
                self._quantity[key] = quantity
            self._changed(key)

    def apply(self, key: int, data: Mapping[str, Any], *, at: Seq) -> bool:
        """One `availability_changed` event; False when the listing's state already includes it."""
        listing = self._listings.setdefault(key, _Listing())
        epoch, seq = at
        if epoch == listing.as_of[0] and seq <= listing.as_of[1]:
            return False
        listing.as_of = at
        if "blocked_periods" in data:
            self._set_blocked(key, listing, blocked_ranges(data["blocked_periods"]))
        else:
            rental_id = str(data["rental_id"])
            self._release(key, listing, rental_id)
            if data.get("change") in ("held", "moved"):
                units = tuple(data.get("unit_numbers") or range(1, int(data.get("units", 1)) + 1))
                start, until = datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["until"])
                self._hold(key, listing, rental_id, (units, start, until))
        self._changed(key)
        return True

    def forget(self, key: int) -> None:
        self._quantity.pop(key, None)
        listing = self._listings.pop(key, None)
        if listing is not None:
            for rental_id in list(listing.holds):
                self._release(key, listing, rental_id)
            self._set_blocked(key, listing, ())
        self._changed(key)

    def prune(self, before: datetime) -> int:
        """Drop holds that ended before `before` (no search asks about the past); how many."""
        dropped = 0
        for key, listing in self._listings.items():
            for rental_id, (_, _, until) in list(listing.holds.items()):
                if until < before:
                    self._release(key, listing, rental_id)
                    dropped += 1
        if dropped:
            self._periods.clear()  # past holds never decide a future period; simply recompute
        return dropped

    def _hold(self, key: int, listing: _Listing, rental_id: str,
              held: tuple[tuple[int, ...], datetime, datetime]) -> None:
        units, start, until = held
        listing.holds[rental_id] = held
        listing.calendar = listing.calendar.with_hold(units, Hold(start, until, rental_id))
        self._count(key, start, until, +1)

    def _release(self, key: int, listing: _Listing, rental_id: str) -> None:
        held = listing.holds.pop(rental_id, None)
        if held is not None:
            units, start, until = held
            listing.calendar = listing.calendar.without(units, rental_id)
            self._count(key, start, until, -1)

    def _set_blocked(self, key: int, listing: _Listing, ranges: tuple[tuple[datetime, datetime], ...]) -> None:
        for start, until in listing.blocked:
            self._count(key, start, until, -1)
        listing.blocked = ranges
        for start, until in ranges:
            self._count(key, start, until, +1)

    def _count(self, key: int, start: datetime, until: datetime, delta: int) -> None:
        for day in _days(start, until):
            counts = self._by_day.setdefault(day, {})
            left = counts.get(key, 0) + delta
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)
                if not counts:
                    del self._by_day[day]

    def _changed(self, key: int) -> None:
        """Keep every cached period's answer right for this listing (a few lookups), rather
        than recomputing whole periods: bookings arrive all the time, searches more often."""
        for busy in self._periods.values():
            if self.is_available(key, busy.start, busy.end):
                changed = key in busy.keys
                busy.keys.discard(key)
            else:
                changed = key not in busy.keys
                busy.keys.add(key)
            if changed:
                busy.frozen = None

    # ------------------------------------------------------------------ queries

    def is_available(self, key: int, start: datetime, end: datetime) -> bool:
        listing = self._listings.get(key)
        if listing is None:
            return True
        if any(start < b_end and b_start < end for b_start, b_end in listing.blocked):
            return False
        return bool(listing.calendar.free_units(self._quantity.get(key, 1), start, end, wanted=1))

    def unavailable(self, start: datetime, end: datetime) -> frozenset[int]:
        """Keys of the listings with no unit free for all of [start, end)."""
        busy = self._periods.get((start, end))
        if busy is None:
            candidates: set[int] = set()
            for day in _days(start, end):
                candidates.update(self._by_day.get(day, ()))
            busy = _Period(start, end, {key for key in candidates if not self.is_available(key, start, end)})
            self._periods[(start, end)] = busy
            if len(self._periods) > _CACHED_PERIODS:
                self._periods.popitem(last=False)
        else:
            self._periods.move_to_end((start, end))
        if busy.frozen is None:
            busy.frozen = frozenset(busy.keys)
        return busy.frozen

"""A listing's calendar in memory: which of its identical units are held, when.

Each unit (1..quantity) has its holds sorted by start; holds on one unit never overlap (the
`bookings_no_overlap` constraint guarantees the same in Postgres), so "is this unit free over
[start, until)" is one binary search. The calendar is immutable: a change copies only the lists of
the units it touches, so a decision that is not committed leaves the live calendar as it was."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Hold:
    start: datetime
    until: datetime
    rental_id: str


def _start(hold: Hold) -> datetime:
    return hold.start


@dataclass(frozen=True)
class Calendar:
    holds: Mapping[int, tuple[Hold, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[tuple[int, Hold]]) -> Calendar:
        by_unit: dict[int, list[Hold]] = {}
        for unit, hold in rows:
            by_unit.setdefault(unit, []).append(hold)
        return cls({unit: tuple(sorted(holds, key=_start)) for unit, holds in by_unit.items()})

    def is_free(self, unit: int, start: datetime, until: datetime) -> bool:
        holds = self.holds.get(unit, ())
        # The last hold starting before `until` is the only one that can reach into the range.
        index = bisect.bisect_left(holds, until, key=_start)
        return index == 0 or holds[index - 1].until <= start

    def free_units(self, quantity: int, start: datetime, until: datetime, *, wanted: int | None = None) -> list[int]:
        """The free unit numbers, lowest first; stops after `wanted` of them when given."""
        free: list[int] = []
        for unit in range(1, quantity + 1):
            if self.is_free(unit, start, until):
                free.append(unit)
                if len(free) == wanted:
                    break
        return free

    def busy_count(self, quantity: int, start: datetime, until: datetime) -> int:
        return quantity - len(self.free_units(quantity, start, until))

    def with_hold(self, units: Iterable[int], hold: Hold) -> Calendar:
        holds = dict(self.holds)
        for unit in units:
            current = list(holds.get(unit, ()))
            bisect.insort(current, hold, key=_start)
            holds[unit] = tuple(current)
        return Calendar(holds)

    def without(self, units: Iterable[int], rental_id: str) -> Calendar:
        holds = dict(self.holds)
        for unit in units:
            holds[unit] = tuple(h for h in holds.get(unit, ()) if h.rental_id != rental_id)
        return Calendar(holds)

    def moved(self, units: Iterable[int], rental_id: str, until: datetime) -> Calendar:
        """The rental's holds end at `until` instead (shortened, or extended once checked free)."""
        units = list(units)
        start = next(h.start for h in self.holds[units[0]] if h.rental_id == rental_id)
        return self.without(units, rental_id).with_hold(units, Hold(start, until, rental_id))

"""Russian public holidays, for demand features: people rent tents and bikes for the May holidays
and the New Year break, drills for the days off around them.

The Labour Code (art. 112) fixes the holidays: 1-6 and 8 January (New Year holidays), 7 January
(Christmas), 23 February, 8 March, 1 and 9 May, 12 June, 4 November. A holiday that falls on a
Saturday or Sunday gives the next working day off - except the January ones, whose extra days
off the government moves by yearly decree to bridge other holidays. Those decrees are not
predictable, so this calendar has the fixed days and the statutory shift only: what a model can
know a year ahead."""

from __future__ import annotations

import functools
from datetime import date, timedelta

# (month, day) of the holidays that move to the next working day when they fall on a weekend.
_SHIFTING = ((2, 23), (3, 8), (5, 1), (5, 9), (6, 12), (11, 4))
_NEW_YEAR = tuple(range(1, 9))  # 1-8 January: never shifted by the statute
_SATURDAY = 5


@functools.cache
def days_off(year: int) -> frozenset[date]:
    """Holidays and the weekdays given off for holidays that fell on a weekend."""
    off = {date(year, 1, day) for day in _NEW_YEAR}
    for month, day in _SHIFTING:
        holiday = date(year, month, day)
        off.add(holiday)
        if holiday.weekday() >= _SATURDAY:
            moved = holiday + timedelta(days=1)
            while moved.weekday() >= _SATURDAY or moved in off:
                moved += timedelta(days=1)
            off.add(moved)
    return frozenset(off)


def is_day_off(day: date) -> bool:
    """A weekend day or a holiday (or a holiday's day off)."""
    return day.weekday() >= _SATURDAY or day in days_off(day.year)


def is_holiday(day: date) -> bool:
    return day in days_off(day.year)


def days_to_next_holiday(day: date) -> int:
    """0 on a holiday; otherwise how many days until the next one (at most a year)."""
    for ahead in range(0, 367):
        if is_holiday(day + timedelta(days=ahead)):
            return ahead
    raise AssertionError("every year has holidays")

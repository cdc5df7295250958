"""The replica's calendars: which listings are booked out for a period, from snapshot rows and
`availability_changed` events, kept right for the periods searched lately."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from actors.periods import LISTING_TIME_ZONE
from search.availability import AvailabilityBook

DAY = timedelta(days=1)
D1 = datetime(2026, 12, 5, tzinfo=LISTING_TIME_ZONE)  # a Saturday, Moscow time


def _held(rental: str, start: datetime, until: datetime, units: list[int], change: str = "held") -> dict[str, Any]:
    return {"change": change, "rental_id": rental, "start": start.isoformat(), "until": until.isoformat(),
            "units": len(units), "unit_numbers": units}


def test_a_listing_is_booked_out_only_when_no_unit_is_free_for_the_whole_period() -> None:
    book = AvailabilityBook()
    book.set_quantity(7, 2)
    book.apply(7, _held("a", D1, D1 + 2 * DAY, [1]), at=("e", 1))
    assert book.unavailable(D1, D1 + DAY) == frozenset()  # unit 2 is free
    book.apply(7, _held("b", D1 + DAY, D1 + 3 * DAY, [2]), at=("e", 2))
    # Unit 1 is busy on day 1, unit 2 on day 2: neither is free for both days.
    assert book.unavailable(D1, D1 + 2 * DAY) == {7}
    assert book.unavailable(D1 + 2 * DAY, D1 + 3 * DAY) == frozenset()  # unit 1 is free again
    book.apply(7, _held("b", D1 + DAY, D1 + 3 * DAY, [2], change="released"), at=("e", 3))
    assert book.unavailable(D1, D1 + 2 * DAY) == frozenset()


def test_a_cached_period_follows_every_change() -> None:
    book = AvailabilityBook()
    period = (D1, D1 + 2 * DAY)
    assert book.unavailable(*period) == frozenset()
    book.apply(1, _held("r", D1 + DAY, D1 + 4 * DAY, [1]), at=("e", 1))
    assert book.unavailable(*period) == {1}
    book.apply(1, _held("r", D1 + 2 * DAY, D1 + 4 * DAY, [1], change="moved"), at=("e", 2))
    assert book.unavailable(*period) == frozenset()  # moved out of the period
    book.apply(2, {"blocked_periods": [{"start": "2026-12-06", "end": "2026-12-06"}]}, at=("f", 1))
    assert book.unavailable(*period) == {2}
    book.set_quantity(3, 2)
    book.apply(3, _held("x", D1, D1 + DAY, [1]), at=("g", 1))
    book.apply(3, _held("y", D1, D1 + DAY, [2]), at=("g", 2))
    assert book.unavailable(*period) == {2, 3}
    book.set_quantity(3, 3)  # a third unit: free again
    assert book.unavailable(*period) == {2}
    book.forget(2)  # archived
    assert book.unavailable(*period) == frozenset()


def test_events_the_snapshot_already_has_are_skipped() -> None:
    book = AvailabilityBook()
    book.load(5, quantity=1, blocked_periods=[], holds=[("r1", 1, D1, D1 + DAY)], as_of=("e", 10))
    assert book.unavailable(D1, D1 + DAY) == {5}
    # A replayed release from before the snapshot must not free what a later hold took.
    assert not book.apply(5, _held("r0", D1, D1 + DAY, [1], change="released"), at=("e", 9))
    assert book.apply(5, _held("r1", D1, D1 + DAY, [1], change="released"), at=("e", 11))
    assert book.unavailable(D1, D1 + DAY) == frozenset()
    # A new epoch (the channel was reset) starts over: its events apply.
    assert book.apply(5, _held("r2", D1, D1 + DAY, [1]), at=("new", 1))
    assert book.unavailable(D1, D1 + DAY) == {5}


def test_owner_blocked_days_count_whole_moscow_days() -> None:
    book = AvailabilityBook()
    book.load(9, quantity=4, blocked_periods=[{"start": "2026-12-05", "end": "2026-12-06"}], holds=[],
              as_of=("", 0))
    assert book.unavailable(D1 + 2 * DAY, D1 + 3 * DAY) == frozenset()
    assert book.unavailable(D1 - DAY, D1 + timedelta(hours=1)) == {9}
    assert book.unavailable(D1 + DAY + timedelta(hours=23), D1 + 3 * DAY) == {9}


def test_prune_drops_past_holds() -> None:
    book = AvailabilityBook()
    book.apply(1, _held("old", D1 - 10 * DAY, D1 - 8 * DAY, [1]), at=("e", 1))
    book.apply(1, _held("new", D1, D1 + DAY, [1]), at=("e", 2))
    assert book.prune(D1 - DAY) == 1
    assert book.unavailable(D1 - 10 * DAY, D1 - 9 * DAY) == frozenset()
    assert book.unavailable(D1, D1 + DAY) == {1}

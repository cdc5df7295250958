"""Quotes are exact kopeck arithmetic; periods turn the client's days and hours into instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from actors.calendar import Calendar, Hold
from actors.periods import PeriodError, RentalPeriod, day_start
from actors.quotes import PricingTerms, percent_of, quote, refund_amount, refund_percent

TERMS = PricingTerms(price_per_unit=70_000, deposit=500_000,
                     discounts=[{"min_units": 3, "percent": 10}, {"min_units": 7, "percent": 20}],
                     price_overrides=[{"date": "2027-06-12", "price_per_unit": 100_000}])
MODERATE = [{"hours_before": 120, "refund_percent": 100}, {"hours_before": 24, "refund_percent": 50},
            {"hours_before": 0, "refund_percent": 0}]


def test_a_day_period_counts_its_last_day() -> None:
    period = RentalPeriod.for_days(date(2027, 6, 10), date(2027, 6, 12))
    assert period.units == 3
    assert period.start == datetime(2027, 6, 9, 21, tzinfo=UTC)  # midnight in Moscow
    assert period.wire() == {"start": "2027-06-10", "end": "2027-06-12"}


def test_hour_periods_are_whole_hours_with_an_offset() -> None:
    period = RentalPeriod.parse("hour", "2027-06-10T10:00:00+03:00", "2027-06-10T13:00:00+03:00")
    assert period.units == 3
    for start, end in [("2027-06-10T10:30:00+03:00", "2027-06-10T13:00:00+03:00"),
                       ("2027-06-10T10:00:00", "2027-06-10T13:00:00"),
                       ("2027-06-10T13:00:00+03:00", "2027-06-10T10:00:00+03:00"),
                       ("2027-06-10", "2027-06-11")]:
        with pytest.raises(PeriodError):
            RentalPeriod.parse("hour", start, end)
    with pytest.raises(PeriodError):
        RentalPeriod.parse("day", "2027-06-10T10:00:00+03:00", "2027-06-11")


def test_a_quote_adds_overrides_discount_fee_and_deposit() -> None:
    period = RentalPeriod.for_days(date(2027, 6, 10), date(2027, 6, 13))
    priced = quote(TERMS, period, quantity=2)
    assert [(line["units"], line["unit_price"], line["amount"]) for line in priced["lines"]] == [
        (2, 70_000, 280_000), (1, 100_000, 200_000), (1, 70_000, 140_000)]
    assert priced["rent"] == 620_000
    assert priced["discount"] == {"percent": 10, "amount": 62_000}
    assert priced["platform_fee"] == 55_800
    assert priced["total"] == 613_800
    assert priced["deposit"] == 1_000_000 and priced["total_with_deposit"] == 1_613_800


def test_the_best_discount_applies_and_percentages_round_half_up() -> None:
    week = RentalPeriod.for_days(date(2027, 7, 1), date(2027, 7, 7))
    assert quote(TERMS, week, 1)["discount"]["percent"] == 20
    assert percent_of(5, 1000) == 1  # 0.5 kopeck rounds up
    assert percent_of(4, 1000) == 0


def test_refunds_follow_the_policy_tiers() -> None:
    assert refund_percent(MODERATE, 200) == 100
    assert refund_percent(MODERATE, 120) == 100
    assert refund_percent(MODERATE, 119.9) == 50
    assert refund_percent(MODERATE, 3) == 0
    priced = quote(TERMS, RentalPeriod.for_days(date(2027, 7, 1), date(2027, 7, 3)), 1)
    rent_after_discount = priced["rent"] - priced["discount"]["amount"]
    assert refund_amount(priced, 100) == priced["total"]
    assert refund_amount(priced, 50) == rent_after_discount // 2


def test_the_calendar_finds_free_units_around_holds() -> None:
    start = day_start(date(2027, 6, 10))
    day = timedelta(days=1)
    calendar = Calendar().with_hold([1], Hold(start, start + 2 * day, "a")).with_hold(
        [2], Hold(start + day, start + 3 * day, "b"))
    assert calendar.free_units(3, start, start + day) == [2, 3]
    assert calendar.free_units(3, start + 2 * day, start + 3 * day) == [1, 3]
    assert calendar.free_units(3, start - day, start) == [1, 2, 3]  # touching is not overlapping
    moved = calendar.moved([1], "a", start + 5 * day)
    assert moved.free_units(3, start + 4 * day, start + 5 * day) == [2, 3]
    assert calendar.without([1], "a").free_units(3, start, start + day) == [1, 2, 3]
    assert calendar.free_units(3, start, start + day) == [2, 3]  # the original is unchanged

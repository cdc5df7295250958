"""ml-core features are pure functions: tested directly, the same for training and serving."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.periods import LISTING_TIME_ZONE, day_start
from ml.features import (
    MIN_CITY_COMPARABLES,
    Comparables,
    ListingFacts,
    features,
    period_features,
    price_ratio,
)
from ml.holidays_ru import days_off, days_to_next_holiday, is_day_off, is_holiday


def test_fixed_holidays_and_the_statutory_shift() -> None:
    off = days_off(2026)
    assert {date(2026, 1, d) for d in range(1, 9)} <= off
    assert {date(2026, 2, 23), date(2026, 3, 8), date(2026, 5, 1), date(2026, 5, 9), date(2026, 6, 12),
            date(2026, 11, 4)} <= off
    # 8 March 2026 is a Sunday: Monday 9 March is off; 9 May 2026 a Saturday: Monday 11 May is off.
    assert date(2026, 3, 9) in off and date(2026, 5, 11) in off
    # A January holiday on a weekend is not shifted by the statute (decrees do that, yearly).
    assert date(2026, 1, 3).weekday() == 5 and date(2026, 1, 9) not in off
    assert len(days_off(2025)) >= 14


def test_days_off_and_the_distance_to_the_next_holiday() -> None:
    assert is_day_off(date(2026, 11, 28))  # a Saturday
    assert not is_day_off(date(2026, 11, 27)) and not is_holiday(date(2026, 11, 28))
    assert days_to_next_holiday(date(2026, 11, 4)) == 0
    assert days_to_next_holiday(date(2026, 11, 27)) == (date(2027, 1, 1) - date(2026, 11, 27)).days
    assert days_to_next_holiday(date(2026, 12, 31)) == 1


def test_period_features_of_a_may_holidays_rental() -> None:
    asked = datetime(2026, 4, 20, 9, 0, tzinfo=UTC)
    start, end = day_start(date(2026, 5, 1)), day_start(date(2026, 5, 4))  # 1-3 May, three days
    got = period_features(start, end, "day", asked_at=asked)
    assert got.length_units == 3 and got.start_weekday == 4 and got.start_month == 5  # a Friday
    assert got.holidays == 1 and got.day_off_share == 1.0  # Friday 1 May, then the weekend
    assert got.days_to_holiday == 0
    assert got.lead_days == pytest.approx((start - asked).total_seconds() / 86400)


def test_hourly_periods_count_hours_and_moscow_days() -> None:
    start = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)  # 23:00 Friday in Moscow
    got = period_features(start, start + timedelta(hours=3), "hour", asked_at=start - timedelta(hours=1))
    assert got.length_units == 3 and got.start_weekday == 4
    assert got.day_off_share == 0.5  # Friday night into Saturday
    with pytest.raises(ValueError, match="ends before"):
        period_features(start, start, "hour", asked_at=start)


def _listing(price: int, city: str = "Москва", category: str = "tents") -> ListingFacts:
    return ListingFacts(category_id=category, city=city, rental_unit="day", price_per_unit=price)


def test_comparables_use_the_city_median_only_with_enough_listings() -> None:
    moscow = [_listing(100_000 + i) for i in range(MIN_CITY_COMPARABLES)]
    kazan = [_listing(10_000, city="Казань") for _ in range(3)]
    comparables = Comparables.of(moscow + kazan)
    assert comparables.median(_listing(1, city="Москва")) == pytest.approx(100_009.5)
    # Kazan has 3: the country's median (all 23 listings) stands in.
    assert comparables.median(_listing(1, city="Казань")) == comparables.country[("tents", "day")]
    assert comparables.median(_listing(1, category="bikes")) is None


@given(st.floats(min_value=1, max_value=1e9), st.floats(min_value=1, max_value=1e9))
def test_price_ratio_is_bounded_and_never_falls_as_the_price_rises(price: float, median: float) -> None:
    ratio = price_ratio(price, median)
    assert 0.1 <= ratio <= 10.0
    assert price_ratio(price * 1.5, median) >= ratio
    assert price_ratio(price, None) == 1.0


def test_a_row_at_another_price_changes_only_the_price_features() -> None:
    listing = ListingFacts("tents", "Москва", "day", 80_000, deposit=400_000, photos=3, instant_book=True)
    comparables = Comparables.of([_listing(100_000)])
    start = datetime(2026, 12, 5, tzinfo=LISTING_TIME_ZONE)
    own = features(listing, comparables, start, start + timedelta(days=2), asked_at=start - timedelta(days=7))
    dearer = features(listing, comparables, start, start + timedelta(days=2), asked_at=start - timedelta(days=7),
                      price=120_000)
    assert own["price_ratio"] == pytest.approx(0.8) and dearer["price_ratio"] == pytest.approx(1.2)
    assert own["deposit_ratio"] == pytest.approx(5.0) and dearer["deposit_ratio"] == pytest.approx(400_000 / 120_000)
    assert {k for k in own if own[k] != dearer[k]} == {"price_ratio", "deposit_ratio"}
    assert own["lead_days"] == 7.0 and own["length_units"] == 2.0 and own["instant_book"] == 1.0

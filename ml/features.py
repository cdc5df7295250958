"""Features of a (listing, period, price) question - "will this be booked?" - as pure functions.

The same functions serve training (rows from the rental history) and serving (a listing and the
period an owner or renter asks about), so the two can never drift apart. Each feature is a
plain number; categorical values (category, city, rental unit) are kept as strings and encoded
by the model code. Price enters only as `price_ratio` - the price over the median of comparable
listings (same category and rental unit, in the city when it has enough of them) - which is the
one feature the rental-probability model constrains to be non-increasing (a higher price never
makes a booking more likely), and the lever the price suggestion turns."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

import numpy as np

from actors.periods import LISTING_TIME_ZONE
from ml.holidays_ru import days_to_next_holiday, is_day_off, is_holiday

# A city's median counts once it has this many comparable listings; below, the country's.
MIN_CITY_COMPARABLES = 20
# Outside this band the ratio says "far too cheap / far too dear"; further is noise.
PRICE_RATIO_BOUNDS = (0.1, 10.0)
_UNIT_HOURS = {"day": 24.0, "hour": 1.0}


@dataclass(frozen=True)
class ListingFacts:
    """What a listing (or a draft the owner is writing) says about itself."""
    category_id: str
    city: str
    rental_unit: str  # "day" | "hour"
    price_per_unit: int  # kopecks
    deposit: int = 0
    photos: int = 0
    owner_rating: float = 0.0
    instant_book: bool = False
    quantity: int = 1


@dataclass(frozen=True)
class PeriodFeatures:
    lead_days: float  # from the moment of asking to the start
    length_units: float  # days or hours, as the listing rents
    start_weekday: int  # 0 Monday .. 6 Sunday, Moscow time
    start_month: int  # 1..12
    day_off_share: float  # weekend days and holidays among the period's days
    holidays: int  # public holidays (or their days off) in the period
    days_to_holiday: int  # from the start to the next holiday (0: starts on one)


@dataclass(frozen=True)
class Comparables:
    """Median prices per (category, unit) and per (category, unit, city), from the listings."""
    country: Mapping[tuple[str, str], float]
    city: Mapping[tuple[str, str, str], float]

    @classmethod
    def of(cls, listings: Iterable[ListingFacts]) -> Comparables:
        country: dict[tuple[str, str], list[int]] = defaultdict(list)
        city: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for listing in listings:
            country[(listing.category_id, listing.rental_unit)].append(listing.price_per_unit)
            city[(listing.category_id, listing.rental_unit, listing.city)].append(listing.price_per_unit)
        return cls(
            country={key: float(statistics.median(prices)) for key, prices in country.items()},
            city={key: float(statistics.median(prices)) for key, prices in city.items()
                  if len(prices) >= MIN_CITY_COMPARABLES},
        )

    def median(self, listing: ListingFacts) -> float | None:
        """The comparable price: the city's median if it has enough listings, else the country's."""
        city = self.city.get((listing.category_id, listing.rental_unit, listing.city))
        return city if city is not None else self.country.get((listing.category_id, listing.rental_unit))


def _local(moment: datetime) -> datetime:
    return moment.astimezone(LISTING_TIME_ZONE)


def _days(start: datetime, end: datetime) -> list[date]:
    first, last = _local(start).date(), _local(end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def period_features(start: datetime, end: datetime, unit: str, *, asked_at: datetime) -> PeriodFeatures:
    """`start`/`end` as the rental would have them (end excluded), `asked_at` when the question
    is asked (the request's time in training, now when serving)."""
    if end <= start:
        raise ValueError("the period ends before it starts")
    days = _days(start, end)
    first = _local(start)
    return PeriodFeatures(
        lead_days=max(0.0, (start - asked_at).total_seconds() / 86400),
        length_units=(end - start).total_seconds() / 3600 / _UNIT_HOURS[unit],
        start_weekday=first.weekday(),
        start_month=first.month,
        day_off_share=sum(is_day_off(day) for day in days) / len(days),
        holidays=sum(is_holiday(day) for day in days),
        days_to_holiday=days_to_next_holiday(first.date()),
    )


def price_ratio(price: float, median: float | None) -> float:
    """The price over the comparable median, within PRICE_RATIO_BOUNDS (1.0 with no comparables)."""
    if median is None or median <= 0:
        return 1.0
    low, high = PRICE_RATIO_BOUNDS
    return min(high, max(low, price / median))


def price_feature_columns(listing: ListingFacts, comparables: Comparables, prices: np.ndarray
                          ) -> dict[str, np.ndarray]:
    """The features that move with the price, for many prices of one listing at once (the
    suggestion's grid): the same arithmetic as `price_features`, column by column."""
    median = comparables.median(listing)
    if median is None or median <= 0:
        ratio, log_median = np.ones_like(prices), np.log1p(prices)
    else:
        ratio, log_median = np.clip(prices / median, *PRICE_RATIO_BOUNDS), np.full_like(prices, math.log1p(median))
    deposit = np.divide(float(listing.deposit), prices, out=np.zeros_like(prices), where=prices > 0)
    return {"price_ratio": ratio, "log_median_price": log_median, "deposit_ratio": deposit}


def price_features(listing: ListingFacts, comparables: Comparables, price: float | None = None
                   ) -> dict[str, float]:
    """The features that move with the asked price (its own price by default)."""
    asked = float(listing.price_per_unit if price is None else price)
    columns = price_feature_columns(listing, comparables, np.array([asked]))
    return {name: float(values[0]) for name, values in columns.items()}


def listing_features(listing: ListingFacts, comparables: Comparables, *, price: float | None = None
                     ) -> dict[str, float | str]:
    """The listing's features at `price` (its own price by default: a suggestion asks at others)."""
    return {
        "category_id": listing.category_id,
        "city": listing.city,
        "rental_unit": listing.rental_unit,
        **price_features(listing, comparables, price),
        "photos": float(listing.photos),
        "owner_rating": listing.owner_rating,
        "instant_book": float(listing.instant_book),
        "quantity": float(listing.quantity),
    }


def features(listing: ListingFacts, comparables: Comparables, start: datetime, end: datetime, *,
             asked_at: datetime, price: float | None = None) -> dict[str, float | str]:
    """One row: listing features at `price` and the period's features."""
    period = period_features(start, end, listing.rental_unit, asked_at=asked_at)
    return {**listing_features(listing, comparables, price=price),
            **{name: float(value) for name, value in asdict(period).items()}}

"""Suggested prices, judged by the simulated market's true demand: they earn more expected revenue
than keeping the owner's price or pricing at the category median."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ml.features import Comparables, ListingFacts, features
from ml.pricing import BAND, candidates, suggest_price
from ml.rental_probability import RentalProbabilityModel

ELASTICITY = 1.5
# (median price, demand effect): in-demand tents are worth more than their median, drills less -
# the median is the wrong price for both, which a suggestion has to find out from the data.
CATEGORIES = {"tents": (120_000, 1.2), "power-tools": (80_000, -1.0), "bikes": (100_000, 0.2)}
ASKED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _true_probability(row: dict[str, Any]) -> float:
    logit = (-0.6 - ELASTICITY * math.log(row["price_ratio"]) + CATEGORIES[str(row["category_id"])][1]
             + 0.8 * row["day_off_share"] - 0.03 * row["lead_days"])
    return 1 / (1 + math.exp(-logit))


def _listing(rng: random.Random) -> ListingFacts:
    category = rng.choice(list(CATEGORIES))
    median = CATEGORIES[category][0]
    price = int(median * math.exp(rng.uniform(math.log(0.4), math.log(2.5)))) // 1000 * 1000
    return ListingFacts(category_id=category, city="Москва", rental_unit="day", price_per_unit=price)


def _period(rng: random.Random) -> tuple[datetime, datetime]:
    start = datetime(2026, 11, 21, tzinfo=UTC) + timedelta(days=rng.randint(0, 40))
    return start, start + timedelta(days=rng.randint(1, 4))


@pytest.fixture(scope="module")
def market() -> tuple[RentalProbabilityModel, Comparables]:
    rng = random.Random(7)
    comparables = Comparables.of(
        ListingFacts(c, "Москва", "day", median) for c, (median, _) in CATEGORIES.items() for _ in range(30))
    rows, labels = [], []
    for _ in range(15_000):
        listing, (start, end) = _listing(rng), _period(rng)
        row = features(listing, comparables, start, end, asked_at=ASKED)
        rows.append(row)
        labels.append(int(rng.random() < _true_probability(row)))
    return RentalProbabilityModel.train(rows, labels, seed=3), comparables


def _true_revenue(listing: ListingFacts, comparables: Comparables, start: datetime, end: datetime,
                  price: int) -> float:
    row = features(listing, comparables, start, end, asked_at=ASKED, price=price)
    return price * float(row["length_units"]) * _true_probability(row)


def test_suggestions_earn_more_than_the_owners_price_and_the_median(market: Any) -> None:
    model, comparables = market
    rng = random.Random(11)
    suggested = owners = medians = 0.0
    for _ in range(200):
        listing, (start, end) = _listing(rng), _period(rng)
        suggestion = suggest_price(model, listing, comparables, start, end, asked_at=ASKED)
        median = int(comparables.median(listing) or listing.price_per_unit)
        suggested += _true_revenue(listing, comparables, start, end, suggestion.price)
        owners += _true_revenue(listing, comparables, start, end, listing.price_per_unit)
        medians += _true_revenue(listing, comparables, start, end, median)
    assert suggested > 1.10 * owners and suggested > 1.05 * medians, (suggested, owners, medians)


def test_the_suggestion_stays_in_the_band_and_reports_the_owners_own_price(market: Any) -> None:
    model, comparables = market
    listing = ListingFacts("tents", "Москва", "day", 500_000)  # four times the median
    start = datetime(2026, 12, 5, tzinfo=UTC)
    suggestion = suggest_price(model, listing, comparables, start, start + timedelta(days=2), asked_at=ASKED)
    median = comparables.median(listing)
    assert median is not None and BAND[0] * median * 0.99 <= suggestion.price <= BAND[1] * median * 1.01
    assert suggestion.price % 1000 == 0 and suggestion.price < listing.price_per_unit
    # Far beyond any price it saw the model's probability is flat, so its revenue at the owner's
    # price can look higher: that extrapolation is exactly what the band keeps out of suggestions.
    assert suggestion.probability > suggestion.own_price_probability
    assert 500_000 not in candidates(listing, comparables)

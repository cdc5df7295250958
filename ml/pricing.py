"""Price suggestion: the price that maximises expected revenue, price x P(booked | price), for a
listing (or a draft) and a period.

Candidates are a log-spaced grid around the comparable median (half to twice it: a suggestion
outside that band would be a guess the data cannot support), rounded to whole 10 roubles; the
model scores them, and the owner's own price for comparison, in one call. Because P never rises with the price
(ml/rental_probability.py), revenue has a sane optimum; of equal revenues the lower price wins
(more bookings for the same money)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ml.features import Comparables, ListingFacts, features
from ml.rental_probability import RentalProbabilityModel

BAND = (0.5, 2.0)  # candidates, as multiples of the comparable median
GRID_POINTS = 61
ROUND_TO = 1_000  # kopecks: 10 roubles


@dataclass(frozen=True)
class PriceSuggestion:
    price: int  # kopecks per unit
    probability: float  # of being booked for the period at that price
    expected_revenue: float  # kopecks: price x units x probability
    own_price_probability: float
    own_price_revenue: float


def candidates(listing: ListingFacts, comparables: Comparables) -> list[int]:
    centre = comparables.median(listing) or float(listing.price_per_unit)
    grid = centre * np.exp(np.linspace(np.log(BAND[0]), np.log(BAND[1]), GRID_POINTS))
    return sorted({max(ROUND_TO, round(p / ROUND_TO) * ROUND_TO) for p in grid.tolist()})


def suggest_price(model: RentalProbabilityModel, listing: ListingFacts, comparables: Comparables,
                  start: datetime, end: datetime, *, asked_at: datetime) -> PriceSuggestion:
    prices = candidates(listing, comparables)
    # The owner's price is scored with the candidates (one model call) for comparison, never suggested.
    scored = [*prices, listing.price_per_unit]
    rows = [features(listing, comparables, start, end, asked_at=asked_at, price=p) for p in scored]
    probabilities = model.predict(rows)
    units = float(rows[0]["length_units"])
    revenue = np.asarray(scored, dtype=np.float64) * units * probabilities
    best = int(np.argmax(revenue[:-1]))  # the first maximum: the lowest price among equals
    return PriceSuggestion(price=prices[best], probability=float(probabilities[best]),
                           expected_revenue=float(revenue[best]), own_price_probability=float(probabilities[-1]),
                           own_price_revenue=float(revenue[-1]))

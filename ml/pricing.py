"""Price suggestion: the price that maximises expected revenue, price x P(booked | price), for a
listing (or a draft) and a period.

Candidates are a log-spaced grid around the comparable median, or a better-informed centre when
the question brings one (half to twice it: a suggestion
outside that band would be a guess the data cannot support), rounded to whole 10 roubles; the
model scores them, and the owner's own price for comparison, in one call - one call for a whole
batch of questions, which is what makes a serving replica's micro-batches pay. Because P never
rises with the price (ml/rental_probability.py), revenue has a sane optimum; of equal revenues
the lower price wins (more bookings for the same money)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ml.features import Comparables, ListingFacts, features, price_feature_columns
from ml.rental_probability import RentalProbabilityModel

BAND = (0.5, 2.0)  # candidates, as multiples of the comparable median
GRID_POINTS = 61
ROUND_TO = 1_000  # kopecks: 10 roubles


@dataclass(frozen=True)
class PriceQuestion:
    listing: ListingFacts
    start: datetime
    end: datetime
    asked_at: datetime
    has_price: bool = True  # False for a draft: its price_per_unit is only a placeholder
    # Where the candidates centre, when something knows better than the category median (a
    # draft's text-nearest listings); None: the comparable median.
    centre: float | None = None


@dataclass(frozen=True)
class PriceSuggestion:
    price: int  # kopecks per unit
    probability: float  # of being booked for the period at that price
    expected_revenue: float  # kopecks: price x units x probability
    own_price_probability: float
    own_price_revenue: float
    units: float


def candidates(listing: ListingFacts, comparables: Comparables, centre: float | None = None) -> list[int]:
    centre = centre or comparables.median(listing) or float(listing.price_per_unit)
    grid = centre * np.exp(np.linspace(np.log(BAND[0]), np.log(BAND[1]), GRID_POINTS))
    return sorted({max(ROUND_TO, round(p / ROUND_TO) * ROUND_TO) for p in grid.tolist()})


def suggest_prices(model: RentalProbabilityModel, comparables: Comparables, questions: Sequence[PriceQuestion]
                   ) -> list[PriceSuggestion]:
    """Every question's candidates (and the owner's price, scored for comparison, never
    suggested) in one model call."""
    grids = [[*candidates(q.listing, comparables, q.centre), q.listing.price_per_unit] for q in questions]
    blocks, units = [], []
    for question, grid in zip(questions, grids, strict=True):
        # Only the price's own columns change along the grid: the rest is computed once.
        base = features(question.listing, comparables, question.start, question.end, asked_at=question.asked_at)
        units.append(float(base["length_units"]))
        block = np.repeat(model.matrix([base]), len(grid), axis=0)
        prices = np.asarray(grid, dtype=np.float64)
        for name, values in price_feature_columns(question.listing, comparables, prices).items():
            block[:, model.column(name)] = values
        blocks.append(block)
    probabilities = model.predict_matrix(np.vstack(blocks))
    out, offset = [], 0
    for grid, length in zip(grids, units, strict=True):
        p = probabilities[offset:offset + len(grid)]
        offset += len(grid)
        revenue = np.asarray(grid, dtype=np.float64) * length * p
        best = int(np.argmax(revenue[:-1]))  # the first maximum: the lowest price among equals
        out.append(PriceSuggestion(price=grid[best], probability=float(p[best]), expected_revenue=float(revenue[best]),
                                   own_price_probability=float(p[-1]), own_price_revenue=float(revenue[-1]),
                                   units=length))
    return out


def suggest_price(model: RentalProbabilityModel, listing: ListingFacts, comparables: Comparables,
                  start: datetime, end: datetime, *, asked_at: datetime) -> PriceSuggestion:
    return suggest_prices(model, comparables, [PriceQuestion(listing, start, end, asked_at)])[0]

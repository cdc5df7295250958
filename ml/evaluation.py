"""Offline measures of the models, on a time-based holdout.

Pricing is judged as Airbnb judged its price suggestions (Ye et al., KDD 2018): a suggestion
below the price of a night that did not sell might have sold it (`unbooked_below_share`, higher
is better), and a suggestion below the price a night did sell at gives money away
(`booked_shortfall`: the mean shortfall as a share of the booked price, lower is better).

Similar listings are judged on co-bookings: a renter's listing booked after the cutoff should be
among the ten most similar to the one they booked last before it (recall@10)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from actors.periods import day_start
from ml.dataset import LabelledRows, Market, MarketListing
from ml.pricing import PriceQuestion
from ml.pricing_model import PricingModel
from ml.rental_probability import Row

# Suggestions are scored on a sample of the holdout (each costs ~60 model rows).
PRICING_SAMPLE = 1000


@dataclass(frozen=True)
class PricingOutcomes:
    unbooked_below_share: float
    booked_shortfall: float
    rows: int


def pricing_outcomes(model: PricingModel, market: Market, holdout: LabelledRows, *, seed: int = 1) -> PricingOutcomes:
    by_id = {listing.id: listing for listing in market.listings}
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample
    picked = rng.sample(range(len(holdout.rows)), min(PRICING_SAMPLE, len(holdout.rows)))
    questions = []
    for i in picked:
        listing = by_id[holdout.listing_ids[i]]
        row = holdout.rows[i]
        questions.append(_question(listing, holdout.days[i], row))
    suggested = np.array([a["price"] for a in model.answer(questions)], dtype=np.float64)
    prices = np.array([holdout.prices[i] for i in picked], dtype=np.float64)
    labels = np.array([holdout.labels[i] for i in picked])
    weights = np.array([holdout.weights[i] for i in picked])
    unbooked, booked = labels == 0, labels == 1
    below = float(np.average(suggested[unbooked] < prices[unbooked], weights=weights[unbooked])) if unbooked.any() \
        else float("nan")
    shortfall = float(np.mean(np.maximum(0.0, prices[booked] - suggested[booked]) / prices[booked])) if booked.any() \
        else float("nan")
    return PricingOutcomes(unbooked_below_share=below, booked_shortfall=shortfall, rows=len(picked))


def _question(listing: MarketListing, day: date, row: Row) -> PriceQuestion:
    """The holdout row's question again: its listing, its period (rebuilt from lead and length)."""
    start = day_start(day)
    unit_hours = 24.0 if listing.facts.rental_unit == "day" else 1.0
    end = start + timedelta(hours=float(row["length_units"]) * unit_hours)
    return PriceQuestion(listing.facts, start, end, asked_at=start - timedelta(days=float(row["lead_days"])))


# ---------------------------------------------------------------------- similar listings


@dataclass(frozen=True)
class CoBookings:
    """Bookings before the cutoff (to learn from) and the pairs after it (to test on)."""
    training: list[tuple[str, str]]  # (renter, listing)
    pairs: list[tuple[str, str]]  # (the renter's last listing before the cutoff, one booked after it)


def co_bookings(bookings: Sequence[tuple[datetime, str, str]], *, holdout_share: float = 0.2) -> CoBookings:
    """`bookings`: (requested at, renter, listing), any order."""
    ordered = sorted(bookings)
    cut = int(len(ordered) * (1 - holdout_share))
    training = [(renter, listing) for _, renter, listing in ordered[:cut]]
    last_before: dict[str, str] = {}
    for renter, listing in training:
        last_before[renter] = listing
    pairs = []
    seen: set[tuple[str, str]] = set()
    for _, renter, listing in ordered[cut:]:
        before = last_before.get(renter)
        if before is not None and before != listing and (before, listing) not in seen:
            seen.add((before, listing))
            pairs.append((before, listing))
    return CoBookings(training=training, pairs=pairs)


def recall_at(k: int, pairs: Sequence[tuple[str, str]], neighbours: Callable[[str, int], list[str]]) -> float:
    if not pairs:
        return float("nan")
    return sum(later in neighbours(query, k) for query, later in pairs) / len(pairs)


def popularity_neighbours(training: Sequence[tuple[str, str]]) -> Callable[[str, int], list[str]]:
    counts: dict[str, int] = defaultdict(int)
    for _, listing in training:
        counts[listing] += 1
    ranked = sorted(counts, key=lambda listing: (-counts[listing], listing))

    def neighbours(query: str, k: int) -> list[str]:
        return [listing for listing in ranked[:k + 1] if listing != query][:k]

    return neighbours


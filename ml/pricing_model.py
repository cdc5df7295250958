"""The pricing model as one versioned artifact: the rental-probability model, the 10-90 % price
range models and the comparable medians they were trained with, serialised together (so a
version always prices against the market it learned), and the answer it gives a question."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ml.features import Comparables, features
from ml.price_range import PriceRangeModel
from ml.pricing import ROUND_TO, PriceQuestion, suggest_prices
from ml.rental_probability import RentalProbabilityModel


def _rounded(kopecks: float) -> int:
    return max(ROUND_TO, round(kopecks / ROUND_TO) * ROUND_TO)


@dataclass
class PricingModel:
    probability: RentalProbabilityModel
    price_range: PriceRangeModel
    comparables: Comparables

    def answer(self, questions: Sequence[PriceQuestion]) -> list[dict[str, Any]]:
        """One answer per question, computed in two model calls for the whole batch."""
        if not questions:
            return []
        suggestions = suggest_prices(self.probability, self.comparables, questions)
        ranges = self.price_range.predict([features(q.listing, self.comparables, q.start, q.end, asked_at=q.asked_at)
                                           for q in questions])
        answers = []
        for question, suggestion, (low, high) in zip(questions, suggestions, ranges, strict=True):
            median = self.comparables.median(question.listing)
            answers.append({
                "price": suggestion.price,
                "probability": round(suggestion.probability, 4),
                "expected_revenue": round(suggestion.expected_revenue),
                "range": {"low": _rounded(low), "high": max(_rounded(low), _rounded(high))},
                "comparable_median": None if median is None else _rounded(median),
                "units": suggestion.units,
                "current": {
                    "price": question.listing.price_per_unit,
                    "probability": round(suggestion.own_price_probability, 4),
                    "expected_revenue": round(suggestion.own_price_revenue),
                } if question.has_price else None,
            })
        return answers

    def to_bytes(self) -> bytes:
        return json.dumps({
            "probability": self.probability.to_json(),
            "price_range": self.price_range.to_dict(),
            "comparables": {"country": [[*key, value] for key, value in self.comparables.country.items()],
                            "city": [[*key, value] for key, value in self.comparables.city.items()]},
        }, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PricingModel:
        doc = json.loads(data)
        comparables = Comparables(country={(c, u): float(v) for c, u, v in doc["comparables"]["country"]},
                                  city={(c, u, city): float(v) for c, u, city, v in doc["comparables"]["city"]})
        return cls(probability=RentalProbabilityModel.from_json(doc["probability"]),
                   price_range=PriceRangeModel.from_dict(doc["price_range"]), comparables=comparables)

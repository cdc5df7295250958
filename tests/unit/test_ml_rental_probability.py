"""The rental-probability model on a market with a known demand model: it never rises with the
price, it recovers the price elasticity's sign and rough size, it ranks and is calibrated."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from ml.rental_probability import RentalProbabilityModel, auc, calibration_error

ELASTICITY = 1.5  # as sharehub/seed/rentals.py simulates it
CATEGORY_EFFECT = {"tents": 0.6, "power-tools": 0.0, "bikes": 0.3, "photo-video": -0.4}
CITIES = ("Москва", "Казань", "Сочи")


def _true_logit(row: dict[str, Any]) -> float:
    return float(-0.8 - ELASTICITY * math.log(row["price_ratio"]) + CATEGORY_EFFECT[row["category_id"]]
            + 0.8 * row["day_off_share"] - 0.03 * row["lead_days"] + 0.4 * row["instant_book"]
            + 0.15 * min(row["photos"], 5))


def _market(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int], list[float]]:
    rng = random.Random(seed)
    rows, labels, truth = [], [], []
    for _ in range(n):
        row = {
            "category_id": rng.choice(list(CATEGORY_EFFECT)), "city": rng.choice(CITIES), "rental_unit": "day",
            "price_ratio": math.exp(rng.uniform(math.log(0.3), math.log(3.0))),
            "log_median_price": math.log1p(rng.choice([50_000, 100_000, 300_000])),
            "deposit_ratio": rng.uniform(0, 10), "photos": float(rng.randint(0, 8)), "owner_rating": 0.0,
            "instant_book": float(rng.random() < 0.3), "quantity": 1.0, "lead_days": rng.expovariate(1 / 7),
            "length_units": float(rng.randint(1, 7)), "start_weekday": float(rng.randint(0, 6)),
            "start_month": float(rng.randint(1, 12)), "day_off_share": rng.random(), "holidays": 0.0,
            "days_to_holiday": float(rng.randint(0, 60)),
        }
        p = 1 / (1 + math.exp(-_true_logit(row)))
        rows.append(row)
        truth.append(p)
        labels.append(int(rng.random() < p))
    return rows, labels, truth


@pytest.fixture(scope="module")
def trained() -> tuple[RentalProbabilityModel, list[dict[str, Any]], list[int], list[float]]:
    rows, labels, _ = _market(20_000, seed=1)
    valid_rows, valid_labels, _ = _market(4_000, seed=2)
    model = RentalProbabilityModel.train(rows, labels, valid=(valid_rows, valid_labels))
    test_rows, test_labels, test_truth = _market(6_000, seed=3)
    return model, test_rows, test_labels, test_truth


GRID = np.exp(np.linspace(math.log(0.3), math.log(3.0), 40))


def _sweep(model: RentalProbabilityModel, rows: list[dict[str, Any]]) -> np.ndarray:
    """predictions[row, grid point] with only the price changed."""
    swept = [{**row, "price_ratio": float(ratio)} for row in rows for ratio in GRID]
    return model.predict(swept).reshape(len(rows), len(GRID))


def test_the_probability_never_rises_with_the_price(trained: Any) -> None:
    model, rows, _, _ = trained
    predictions = _sweep(model, rows[:500])
    assert np.all(np.diff(predictions, axis=1) <= 1e-12)
    assert np.all(predictions[:, 0] > predictions[:, -1])  # and it does fall over the range


def test_the_model_recovers_the_elasticity_sign_and_rough_size(trained: Any) -> None:
    model, rows, _, _ = trained
    predictions = np.clip(_sweep(model, rows[:500]), 1e-6, 1 - 1e-6)
    logits = np.log(predictions / (1 - predictions)).mean(axis=0)
    inner = (GRID >= 0.5) & (GRID <= 2.0)
    slope = np.polyfit(np.log(GRID[inner]), logits[inner], 1)[0]
    assert -1.5 * ELASTICITY < slope < -0.5 * ELASTICITY, slope


def test_it_ranks_nearly_as_well_as_the_true_model_and_is_calibrated(trained: Any) -> None:
    model, rows, labels, truth = trained
    predicted = model.predict(rows)
    assert auc(predicted, labels) > auc(truth, labels) - 0.02
    assert calibration_error(predicted, labels) <= 0.05


def test_the_artifact_round_trips_and_unknown_categories_are_missing(trained: Any) -> None:
    model, rows, _, _ = trained
    loaded = RentalProbabilityModel.from_json(model.to_json())
    assert np.allclose(loaded.predict(rows[:100]), model.predict(rows[:100]))
    strange = [{**rows[0], "category_id": "never-seen", "city": "Урюпинск"}]
    assert 0.0 < float(loaded.predict(strange)[0]) < 1.0


def test_auc_and_calibration_error_helpers() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert math.isnan(auc([0.1, 0.2], [1, 1]))
    assert calibration_error([0.2] * 10, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(0.0)
    assert calibration_error([0.9] * 4, [0, 0, 0, 0]) == pytest.approx(0.9)

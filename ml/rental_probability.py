"""P(a listing is booked for a period at a price): a LightGBM classifier over ml/features.py rows.

The probability must never rise when only the price rises - an owner shown "raise the price and
you will be booked more" would rightly stop trusting the product, and the price suggestion
maximises price x P(booked | price), which needs P to be non-increasing in price to have a sane
optimum. LightGBM enforces it: `price_ratio` carries a monotone constraint of -1 (the "advanced"
method, which constrains each split by the whole subtree, not only its siblings).

Categorical features (category, city, unit) are coded from the training vocabulary; a value
never seen in training gets the "unknown" code, which LightGBM treats as missing. The model
serialises to one JSON document (booster text + vocabularies), so a version is one artifact."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

CATEGORICAL = ("category_id", "city", "rental_unit")
NUMERIC = ("price_ratio", "log_median_price", "deposit_ratio", "photos", "owner_rating", "instant_book", "quantity",
           "lead_days", "length_units", "start_weekday", "start_month", "day_off_share", "holidays",
           "days_to_holiday")
FEATURES = CATEGORICAL + NUMERIC
PRICE_FEATURE = "price_ratio"
_UNKNOWN = -1

PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    # Small trees, many rounds: bookings are rare per listing-day, and on the seeded market's
    # time holdout 7 leaves of at least 200 rows beat 31 of 50 (AUC 0.635 vs 0.632, lower log-loss).
    "num_leaves": 7,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "monotone_constraints_method": "advanced",
    "verbosity": -1,
    "num_threads": 2,
}


Row = Mapping[str, float | str]


@dataclass
class RentalProbabilityModel:
    booster: lgb.Booster
    vocabularies: dict[str, dict[str, int]]

    @classmethod
    def train(cls, rows: Sequence[Row], booked: Sequence[int], *, rounds: int = 300, seed: int = 1,
              weights: Sequence[float] | None = None,
              valid: tuple[Sequence[Row], Sequence[int]] | None = None, valid_weights: Sequence[float] | None = None,
              on_round: Callable[[int], None] | None = None) -> RentalProbabilityModel:
        """`weights`: inverse sampling probabilities (ml/dataset.py samples negatives); `on_round`
        is called after each boosting round (progress)."""
        vocabularies = {name: {value: code for code, value in enumerate(sorted({str(r[name]) for r in rows}))}
                        for name in CATEGORICAL}
        model = cls(booster=None, vocabularies=vocabularies)  # type: ignore[arg-type]  # set just below
        params = {**PARAMS, "seed": seed,
                  "monotone_constraints": [-1 if name == PRICE_FEATURE else 0 for name in FEATURES]}
        train_set = lgb.Dataset(model.matrix(rows), label=np.asarray(booked, dtype=np.float64),
                                weight=None if weights is None else np.asarray(weights, dtype=np.float64),
                                feature_name=list(FEATURES), categorical_feature=list(CATEGORICAL),
                                free_raw_data=False)
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Callable[..., Any]] = []
        if on_round is not None:
            callbacks.append(lambda env: on_round(env.iteration + 1))
        if valid is not None:
            valid_sets = [lgb.Dataset(model.matrix(valid[0]), label=np.asarray(valid[1], dtype=np.float64),
                                      weight=None if valid_weights is None else np.asarray(valid_weights),
                                      reference=train_set)]
            callbacks.append(lgb.early_stopping(30, verbose=False))
        model.booster = lgb.train(params, train_set, num_boost_round=rounds, valid_sets=valid_sets,
                                  callbacks=callbacks)
        return model

    def matrix(self, rows: Sequence[Row]) -> np.ndarray:
        out = np.empty((len(rows), len(FEATURES)), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, name in enumerate(CATEGORICAL):
                code = self.vocabularies[name].get(str(row[name]), _UNKNOWN)
                out[i, j] = np.nan if code == _UNKNOWN else code
            for j, name in enumerate(NUMERIC, start=len(CATEGORICAL)):
                out[i, j] = float(row[name])
        return out

    @staticmethod
    def column(name: str) -> int:
        return FEATURES.index(name)

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for rows already in `matrix` form (the price grid fills its columns)."""
        result: np.ndarray = np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)
        return result

    def predict(self, rows: Sequence[Row]) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        # One thread: a serving replica answers many small batches; threads cost more than they save.
        result: np.ndarray = np.asarray(self.booster.predict(self.matrix(rows), num_threads=1), dtype=np.float64)
        return result

    def to_json(self) -> str:
        return json.dumps({"booster": self.booster.model_to_string(), "vocabularies": self.vocabularies,
                           "features": list(FEATURES)})

    @classmethod
    def from_json(cls, text: str) -> RentalProbabilityModel:
        data = json.loads(text)
        if data["features"] != list(FEATURES):
            raise ValueError("the artifact was trained on other features")
        return cls(booster=lgb.Booster(model_str=data["booster"]), vocabularies=data["vocabularies"])


def auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve (rank statistic, ties counted half)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    positives, negatives = int(labels.sum()), int(len(labels) - labels.sum())
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def calibration_error(probabilities: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, *,
                      bins: int = 10, weights: Sequence[float] | np.ndarray | None = None) -> float:
    """Expected calibration error: |mean predicted - observed rate| per probability decile, weighted
    by the bin's share of the rows (of their `weights`, for a sample with inverse-probability weights)."""
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            share = w[mask].sum() / w.sum()
            error += share * abs(np.average(probabilities[mask], weights=w[mask])
                                 - np.average(labels[mask], weights=w[mask]))
    return float(error)


def log_loss(probabilities: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, *,
             weights: Sequence[float] | np.ndarray | None = None) -> float:
    """Mean negative log-likelihood (weighted): what promotion compares - it rewards ranking and
    calibration at once."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-9, 1 - 1e-9)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=weights))

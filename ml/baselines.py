"""The simple models every learned one must beat, measured on the same holdout.

- Rental probability: a logistic regression over the same rows - categories one-hot, numeric
  features standardised, the price as log(price ratio) (the form in which a constant elasticity
  is linear), L2-regularised, fitted by L-BFGS. It cannot learn that elasticity differs by
  category or that seasons differ by category, which is exactly what the trees are for.
- Similar listings: the most booked listings, the same ten for everyone."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ml.rental_probability import CATEGORICAL, NUMERIC, PRICE_FEATURE, Row

_L2 = 1.0


@dataclass
class LogisticBaseline:
    vocabularies: dict[str, list[str]]
    means: np.ndarray
    scales: np.ndarray
    coefficients: np.ndarray

    @classmethod
    def train(cls, rows: Sequence[Row], labels: Sequence[int], *, weights: Sequence[float] | None = None
              ) -> LogisticBaseline:
        vocabularies = {name: sorted({str(row[name]) for row in rows}) for name in CATEGORICAL}
        numeric = _numeric(rows)
        means, scales = numeric.mean(axis=0), numeric.std(axis=0)
        scales[scales == 0] = 1.0
        model = cls(vocabularies, means, scales, np.zeros(0))
        x = model.design(rows)
        y = np.asarray(labels, dtype=np.float64)
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
        w = w / w.mean()

        def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
            z = x @ beta
            p = 1 / (1 + np.exp(-z))
            value = float(np.sum(w * (np.logaddexp(0, z) - y * z)) + _L2 * beta[1:] @ beta[1:] / 2)
            gradient = x.T @ (w * (p - y))
            gradient[1:] += _L2 * beta[1:]
            return value, gradient

        model.coefficients = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x
        return model

    def design(self, rows: Sequence[Row]) -> np.ndarray:
        numeric = (_numeric(rows) - self.means) / self.scales
        columns = [np.ones((len(rows), 1)), numeric]
        for name in CATEGORICAL:
            index = {value: i for i, value in enumerate(self.vocabularies[name])}
            onehot = np.zeros((len(rows), len(index)))
            for r, row in enumerate(rows):
                if (i := index.get(str(row[name]))) is not None:
                    onehot[r, i] = 1.0
            columns.append(onehot)
        return np.hstack(columns)

    def predict(self, rows: Sequence[Row]) -> np.ndarray:
        z = self.design(rows) @ self.coefficients
        result: np.ndarray = 1 / (1 + np.exp(-z))
        return result


def _numeric(rows: Sequence[Row]) -> np.ndarray:
    return np.array([[math.log(float(row[name])) if name == PRICE_FEATURE else float(row[name]) for name in NUMERIC]
                     for row in rows], dtype=np.float64).reshape(len(rows), len(NUMERIC))


def most_booked(bookings: Iterable[tuple[str, str]], k: int) -> list[str]:
    """The k listings with the most bookings (renter, listing) - the popularity baseline."""
    return [listing for listing, _ in Counter(listing for _, listing in bookings).most_common(k)]

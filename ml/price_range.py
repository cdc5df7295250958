"""The 10-90 % price range: at what prices do comparable listings get booked for such a period?

Two LightGBM quantile regressions (alpha 0.1 and 0.9) of the log unit price of booked rentals
on what describes the listing and the period - everything the probability model sees except the
price itself (and the deposit's ratio to it). The suggestion shows the range beside the price so
an owner sees where the market is, and the suggested price is kept inside it when the two
disagree only by the range's own rounding."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from ml.rental_probability import CATEGORICAL, NUMERIC, Row

FEATURES = CATEGORICAL + tuple(name for name in NUMERIC if name not in ("price_ratio", "deposit_ratio"))
QUANTILES = (0.1, 0.9)
PARAMS: dict[str, Any] = {"objective": "quantile", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 30,
                          "verbosity": -1, "num_threads": 2}
_UNKNOWN = -1


@dataclass
class PriceRangeModel:
    boosters: dict[float, lgb.Booster]
    vocabularies: dict[str, dict[str, int]]

    @classmethod
    def train(cls, rows: Sequence[Row], prices: Sequence[int], *, rounds: int = 200, seed: int = 1
              ) -> PriceRangeModel:
        vocabularies = {name: {value: code for code, value in enumerate(sorted({str(r[name]) for r in rows}))}
                        for name in CATEGORICAL}
        model = cls(boosters={}, vocabularies=vocabularies)
        target = np.log(np.maximum(np.asarray(prices, dtype=np.float64), 1.0))
        data = lgb.Dataset(model.matrix(rows), label=target, feature_name=list(FEATURES),
                           categorical_feature=list(CATEGORICAL), free_raw_data=False)
        for alpha in QUANTILES:
            model.boosters[alpha] = lgb.train({**PARAMS, "alpha": alpha, "seed": seed}, data, num_boost_round=rounds)
        return model

    def matrix(self, rows: Sequence[Row]) -> np.ndarray:
        out = np.empty((len(rows), len(FEATURES)), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, name in enumerate(FEATURES):
                if name in self.vocabularies:
                    code = self.vocabularies[name].get(str(row[name]), _UNKNOWN)
                    out[i, j] = np.nan if code == _UNKNOWN else code
                else:
                    out[i, j] = float(row[name])
        return out

    def predict(self, rows: Sequence[Row]) -> np.ndarray:
        """[row, (low, high)] in kopecks per unit."""
        x = self.matrix(rows)
        low, high = (np.exp(self.boosters[a].predict(x, num_threads=1)) for a in QUANTILES)
        return np.stack([np.minimum(low, high), np.maximum(low, high)], axis=1)

    def coverage(self, rows: Sequence[Row], prices: Sequence[int]) -> float:
        """Share of booked prices inside the range (0.8 when the quantiles are right)."""
        bounds = self.predict(rows)
        p = np.asarray(prices, dtype=np.float64)
        return float(np.mean((p >= bounds[:, 0]) & (p <= bounds[:, 1]))) if len(p) else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"boosters": {str(a): b.model_to_string() for a, b in self.boosters.items()},
                "vocabularies": self.vocabularies, "features": list(FEATURES)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriceRangeModel:
        if data["features"] != list(FEATURES):
            raise ValueError("the artifact was trained on other features")
        return cls(boosters={float(a): lgb.Booster(model_str=text) for a, text in data["boosters"].items()},
                   vocabularies=data["vocabularies"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

"""Training: from the rental history in Postgres to a stored, measured and (maybe) promoted model.

For each kind the steps are the same: load, split by time (the holdout is the latest part of the
history, as a model is always used on days after those it learned from), train, score the new
model, the baselines and the promoted model on the same holdout, store the artifact and its
metrics as the kind's next version, and promote it only if it beats the promoted one (or, with
none yet, the baseline):

- pricing beats on the holdout's weighted log-loss (ranking and calibration in one number), must
  keep calibration error <= 0.05 and must pass a price sweep (P never rises with the price);
- similar beats on recall@10 over the holdout's co-bookings.

Progress goes to a `Reporter` (a bar on the console; through a queue from a Ray job)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import numpy as np

from ml.artifacts import ArtifactError, ModelStore
from ml.baselines import LogisticBaseline
from ml.dataset import LabelledRows, Market, booking_rows, load_market
from ml.evaluation import co_bookings, popularity_neighbours, pricing_outcomes, recall_at
from ml.price_range import PriceRangeModel
from ml.pricing_model import PricingModel
from ml.rental_probability import PRICE_FEATURE, RentalProbabilityModel, Row, auc, calibration_error, log_loss
from ml.similar import SimilarListings, SimilarWeights
from storage import ml_models

KINDS = ("pricing", "similar")
HOLDOUT_SHARE = 0.2
VALIDATION_SHARE = 0.15  # of the training part, for early stopping and the weights' choice
ROUNDS = 600  # an upper bound: early stopping on the validation days ends it (~100)
MAX_CALIBRATION_ERROR = 0.05
MIN_POSITIVES = 50  # fewer booked listing-days than this is not a market to learn from
RECALL_K = 10
_SWEEP = np.exp(np.linspace(math.log(0.3), math.log(3.0), 12))


class Reporter(Protocol):
    def start(self, label: str, total: int) -> None: ...
    def advance(self, count: int = 1) -> None: ...
    def finish(self) -> None: ...
    def note(self, text: str) -> None: ...


class NotEnoughData(Exception):
    pass


@dataclass(frozen=True)
class TrainingReport:
    kind: str
    version: int
    promoted: bool
    decision: str
    metrics: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def train_models(pool: asyncpg.Pool, store: ModelStore, reporter: Reporter, *,
                       kinds: Sequence[str] = KINDS, now: datetime | None = None, seed: int = 1
                       ) -> list[TrainingReport]:
    now = now or datetime.now(UTC)
    reporter.note("loading the rental history")
    market = await load_market(pool, now=now)
    reporter.note(f"{len(market.listings)} published listings, {len(market.rentals)} rentals")
    trainers: dict[str, Callable[[], Any]] = {
        "pricing": lambda: _train_pricing(pool, store, market, reporter, seed=seed),
        "similar": lambda: _train_similar(pool, store, market, reporter),
    }
    return [await trainers[kind]() for kind in kinds]


# ---------------------------------------------------------------------- pricing


@dataclass
class _PricingScores:
    auc: float
    calibration_error: float
    log_loss: float

    @classmethod
    def of(cls, predicted: np.ndarray, holdout: LabelledRows) -> _PricingScores:
        return cls(auc=auc(predicted, holdout.labels),
                   calibration_error=calibration_error(predicted, holdout.labels, weights=holdout.weights),
                   log_loss=log_loss(predicted, holdout.labels, weights=holdout.weights))


def _never_rises_with_price(model: RentalProbabilityModel, rows: Sequence[Row]) -> bool:
    swept = [{**row, PRICE_FEATURE: float(ratio)} for row in rows for ratio in _SWEEP]
    predictions = model.predict(swept).reshape(len(rows), len(_SWEEP))
    return bool(np.all(np.diff(predictions, axis=1) <= 1e-12))


async def _train_pricing(pool: asyncpg.Pool, store: ModelStore, market: Market, reporter: Reporter, *,
                         seed: int) -> TrainingReport:
    reporter.note("pricing: building listing-day rows")
    data = booking_rows(market, seed=seed)
    if sum(data.labels) < MIN_POSITIVES:
        raise NotEnoughData(f"only {sum(data.labels)} booked listing-days; need {MIN_POSITIVES}")
    train, holdout = data.split_by_time(HOLDOUT_SHARE)
    fit, valid = train.split_by_time(VALIDATION_SHARE)
    reporter.start("pricing", ROUNDS)
    probability = RentalProbabilityModel.train(fit.rows, fit.labels, weights=fit.weights, rounds=ROUNDS, seed=seed,
                                               valid=(valid.rows, valid.labels), valid_weights=valid.weights,
                                               on_round=lambda _: reporter.advance())
    reporter.finish()
    reporter.note("pricing: price range, baseline and holdout scores")
    booked = train.subset([label == 1 for label in train.labels])
    price_range = PriceRangeModel.train(booked.rows, booked.prices, seed=seed)
    model = PricingModel(probability=probability, price_range=price_range, comparables=market.comparables)
    baseline = LogisticBaseline.train(fit.rows, fit.labels, weights=fit.weights)

    scores = _PricingScores.of(probability.predict(holdout.rows), holdout)
    baseline_scores = _PricingScores.of(baseline.predict(holdout.rows), holdout)
    holdout_booked = holdout.subset([label == 1 for label in holdout.labels])
    outcomes = pricing_outcomes(model, market, holdout)
    monotone = _never_rises_with_price(probability, holdout.rows[:300])
    metrics: dict[str, Any] = {
        **asdict(scores), "baseline_logistic": asdict(baseline_scores),
        "range_coverage": price_range.coverage(holdout_booked.rows, holdout_booked.prices),
        "unbooked_below_share": outcomes.unbooked_below_share, "booked_shortfall": outcomes.booked_shortfall,
        "monotone_in_price": monotone, "boosting_rounds": probability.booster.current_iteration(),
    }
    current = await _current_pricing(pool, store, reporter)
    if current is not None:
        version, current_model = current
        metrics["current"] = {"version": version,
                              **asdict(_PricingScores.of(current_model.probability.predict(holdout.rows), holdout))}
    promote, decision = _pricing_decision(metrics)
    training = {"rows": len(data.rows), "positives": sum(data.labels), "train_rows": len(train.rows),
                "holdout_rows": len(holdout.rows), "holdout_from": min(holdout.days).isoformat(),
                "holdout_to": max(holdout.days).isoformat(), "trained_on": market.now.isoformat()}
    return await _store(pool, store, "pricing", model.to_bytes(), metrics=metrics, training=training,
                        promote=promote, decision=decision, reporter=reporter)


def _pricing_decision(metrics: dict[str, Any]) -> tuple[bool, str]:
    if not metrics["monotone_in_price"]:
        return False, "rejected: its probability rises with the price somewhere"
    if metrics["calibration_error"] > MAX_CALIBRATION_ERROR:
        return False, f"rejected: calibration error {metrics['calibration_error']:.3f} > {MAX_CALIBRATION_ERROR}"
    current = metrics.get("current")
    rival_name, rival = (f"v{current['version']}", current["log_loss"]) if current else (
        "the logistic baseline", metrics["baseline_logistic"]["log_loss"])
    if metrics["log_loss"] < rival:
        return True, f"promoted: holdout log-loss {metrics['log_loss']:.5f} < {rival:.5f} of {rival_name}"
    return False, f"rejected: holdout log-loss {metrics['log_loss']:.5f} not below {rival:.5f} of {rival_name}"


async def _current_pricing(pool: asyncpg.Pool, store: ModelStore, reporter: Reporter
                           ) -> tuple[int, PricingModel] | None:
    row = await ml_models.promoted(pool, "pricing")
    if row is None:
        return None
    try:
        return row["version"], PricingModel.from_bytes(store.get(row["artifact_uri"], row["artifact_sha256"]))
    except (ArtifactError, ValueError, KeyError) as exc:
        # Unreadable or trained on other features: the new model competes with the baseline only.
        reporter.note(f"pricing v{row['version']} cannot be compared ({exc}); judged against the baseline")
        return None


# ---------------------------------------------------------------------- similar listings

WEIGHT_GRID = [SimilarWeights(text=text, category=0.2, price=0.15, distance=distance, co_interest=co)
               for text in (0.35, 0.7) for distance in (0.1, 0.3) for co in (0.0, 0.4, 1.0)]


async def _train_similar(pool: asyncpg.Pool, store: ModelStore, market: Market, reporter: Reporter
                         ) -> TrainingReport:
    contents = market.contents()
    history = market.booked_history()
    split = co_bookings(history, holdout_share=HOLDOUT_SHARE)
    if not split.pairs:
        raise NotEnoughData("no renter booked again after the cutoff: nothing to measure similar listings on")
    # The weights are chosen on the training part's own latest bookings, then scored on the holdout.
    ordered = sorted(history)[:len(split.training)]
    tuning = co_bookings(ordered, holdout_share=VALIDATION_SHARE)
    reporter.start("similar", len(WEIGHT_GRID))
    catalogue = SimilarListings(contents)
    best, best_recall = SimilarWeights(), -1.0
    for weights in WEIGHT_GRID:
        index = catalogue.with_history(tuning.training, weights)
        recall = recall_at(RECALL_K, tuning.pairs, _neighbours(index))
        if recall > best_recall:
            best, best_recall = weights, recall
        reporter.advance()
    reporter.finish()
    index = catalogue.with_history(split.training, best)
    metrics: dict[str, Any] = {
        "recall_at_10": recall_at(RECALL_K, split.pairs, _neighbours(index)),
        "baseline_popularity": {"recall_at_10": recall_at(RECALL_K, split.pairs,
                                                          popularity_neighbours(split.training))},
        "content_only": {"recall_at_10": recall_at(RECALL_K, split.pairs, _neighbours(
            catalogue.with_history((), best)))},
        "tuning_recall_at_10": best_recall, "pairs": len(split.pairs),
    }
    current = await ml_models.promoted(pool, "similar")
    if current is not None:
        try:
            weights = SimilarWeights.from_bytes(store.get(current["artifact_uri"], current["artifact_sha256"]))
            metrics["current"] = {"version": current["version"], "recall_at_10": recall_at(
                RECALL_K, split.pairs, _neighbours(catalogue.with_history(split.training, weights)))}
        except (ArtifactError, ValueError, TypeError) as exc:
            reporter.note(f"similar v{current['version']} cannot be compared ({exc}); judged against the baseline")
    rival_name, rival = (f"v{metrics['current']['version']}", metrics["current"]["recall_at_10"]) \
        if "current" in metrics else ("the popularity baseline", metrics["baseline_popularity"]["recall_at_10"])
    promote = metrics["recall_at_10"] > rival
    decision = (f"{'promoted' if promote else 'rejected'}: holdout recall@10 {metrics['recall_at_10']:.3f} "
                f"{'>' if promote else 'not above'} {rival:.3f} of {rival_name}")
    training = {"listings": len(contents), "bookings": len(history), "training_bookings": len(split.training),
                "weights": asdict(best), "trained_on": market.now.isoformat()}
    return await _store(pool, store, "similar", best.to_bytes(), metrics=metrics, training=training,
                        promote=promote, decision=decision, reporter=reporter)


def _neighbours(index: SimilarListings) -> Callable[[str, int], list[str]]:
    def neighbours(query: str, k: int) -> list[str]:
        return [listing for listing, _ in index.similar(query, k)] if query in index.position else []

    return neighbours


# ---------------------------------------------------------------------- storing


async def _store(pool: asyncpg.Pool, store: ModelStore, kind: str, artifact: bytes, *, metrics: dict[str, Any],
                 training: dict[str, Any], promote: bool, decision: str, reporter: Reporter) -> TrainingReport:
    stored = store.put(kind, artifact)
    clean = _finite(metrics)
    version = await ml_models.record(pool, kind=kind, artifact_uri=stored.uri, artifact_sha256=stored.sha256,
                                     artifact_bytes=stored.size, metrics=clean, training=training,
                                     decision=decision, promote=promote)
    reporter.note(f"{kind} v{version}: {decision}")
    return TrainingReport(kind=kind, version=version, promoted=promote, decision=decision, metrics=clean)


def _finite(value: Any) -> Any:
    """NaN (a metric with nothing to measure) is not JSON: stored as null."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating | np.bool_):
        return value.item()
    return value

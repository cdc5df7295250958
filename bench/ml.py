"""ml-core: price suggestions and similar listings - serving latency and throughput on Ray Serve,
the trained models' holdout metrics, and the revenue a suggestion earns under the seeded market's
true demand model, in one run.

    .venv/bin/python bench/ml.py            # 3 000 listings, 12 000 rentals, 3 rounds; several minutes
    .venv/bin/python bench/ml.py --smoke    # 600 listings, 2 500 rentals, 1 round; under a minute

Setup: an embedded Postgres and a local Ray (2 CPUs) in temporary directories; migrations;
`seed_database` (users, listings, a year of rental histories drawn from sharehub/seed/demand.py);
`train_models` (both kinds, progress on stderr); `ml.serving.deploy` of the Serve app `ml` on a
free port, waited for until it is RUNNING. The promoted versions are also loaded into this process
(the pricing artifact from the model store; the similar-listings index built from the same
catalogue and bookings as the Recommender builds it), and the answers of both paths are checked
to agree before anything is timed.

- **latency**: one request at a time (the p50/p99 of `--requests` calls, median over `--rounds`),
  per path: in-process (`PricingModel.answer` on one question; `SimilarListings.similar`, the
  baseline of the table), through a deployment handle (`Pricing.suggest`, `Recommender.similar`),
  and over HTTP through Serve's proxy and the `MLHttp` ingress (POST /ml/pricing, GET /ml/similar,
  one keep-alive aiohttp session). A handle call alone waits for its micro-batch to fill for up to
  `BATCH_WAIT_SECS` (ml/serving.py), which is in these numbers.
- **throughput**: `--concurrency` requests in flight through the handle (asyncio; each of that
  many clients sends its next question when the last is answered), to `Pricing.suggest`
  (@serve.batch: concurrent questions become one model call) against `Pricing.suggest_unbatched`
  (one model call per question) and against the gateway's own client (`MLClient`, which batches
  concurrent questions itself into `Pricing.suggest_many` calls: one request for up to 64) on the
  same replica; `--throughput-requests` predictions per
  run. Pricing autoscales (1-2 replicas, ml/serving.py), and 256 in flight scale it up within
  seconds, so before these runs the app is deployed once more with Pricing's autoscaling held at
  `--throughput-replicas` (min = max; 0 keeps it as deployed); the table shows the replicas
  running after each run and the CPU the replica's process and this one (the client) spent per
  prediction. For reference, the model alone in this process: one question per call, and
  `MAX_BATCH` per call (the ceiling batching could reach).
- **models**: the holdout metrics from training's reports (`report.metrics`): the rental
  probability's AUC, calibration error and log-loss against the logistic baseline, the price
  range's coverage, the suggestions' `unbooked_below_share` and `booked_shortfall`; recall@10 of
  similar listings against the popularity baseline and content alone. Beside them, the same
  holdout scored by the true demand model (below): the ceiling a learned model can approach.
- **revenue**: for `--uplift-listings` published listings x `--uplift-periods` future periods each
  (lengths and lead times drawn as the seed draws them), the expected revenue at the suggested
  price, at the owner's price and at the category median, under the TRUE demand model:
  P(booked) = 1 - exp(-k w), w = listing_weight(category, city, price / median) x
  day_weight(category, unit, month, weekday) of the period's start day, the median that of the
  same (category, rental unit) over all published listings (as the seed has it), and k = booked
  listing-days / sum of w over all listing-days of the history (k makes the truth a probability
  calibrated to the history). Revenue = price x units x P. The truth-optimal price on the same
  candidate grid the suggestion searches is the upper bound. This is only valid on seeded data,
  which is why the truth lives here and not in ml/.

The latency rounds run first (on the app as `deploy()` made it), then the throughput rounds; rounds
alternate the order of the paths; tables show medians over rounds (the machine is shared)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
import ray
import uvloop
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` from the repo

from actors.periods import day_start, local_day
from bench.common import RunResult, measure, median_result, revision
from ml.artifacts import ModelStore
from ml.client import MLClient
from ml.dataset import HISTORY_DAYS, Market, MarketListing, booking_rows, load_market
from ml.features import ListingFacts
from ml.pricing import ROUND_TO, PriceQuestion, candidates
from ml.pricing_model import PricingModel
from ml.rental_probability import auc, calibration_error, log_loss
from ml.reporting import ConsoleReporter
from ml.serving import APP_NAME, AUTOSCALING, HTTP_INGRESS, MAX_BATCH, ROUTE_PREFIX, deploy
from ml.serving import PRICING as PRICING_DEPLOYMENT
from ml.serving import RECOMMENDER as RECOMMENDER_DEPLOYMENT
from ml.similar import SimilarListings, SimilarWeights
from ml.training import HOLDOUT_SHARE, TrainingReport, train_models
from sharehub.config import load_settings
from sharehub.devstack.postgres import EmbeddedPostgres
from sharehub.devstack.processes import free_port
from sharehub.devstack.ray_local import RAY_NAMESPACE
from sharehub.seed import demand
from sharehub.seed.generate import seed_database
from sharehub.seed.rentals import LEAD_MEAN, LENGTHS
from storage import ml_models
from storage.db import create_pool
from storage.migrate import migrate

# Targets from the tracker.
TARGET_HANDLE_P50_MS, TARGET_HANDLE_P99_MS = 5.0, 50.0
TARGET_BATCHED_PER_SEC = 1000.0
TARGET_CALIBRATION_ERROR = 0.05

SIMILAR_LIMIT = 10
QUESTIONS = 200  # distinct questions (and listings for similar) the latency runs cycle through
AGREEMENT_CHECKS = 20
WARM_UP_CALLS = 50
DEPLOY_TIMEOUT_SECS = 300.0
PRICING, SIMILAR = "pricing", "similar"
IN_PROCESS, HANDLE, CLIENT, HTTP = "in-process", "handle", "client", "HTTP"
BATCHED, UNBATCHED, CLIENT_BATCHED = "batched", "unbatched", "client-batched"
LATENCY_NAMES = {
    (PRICING, IN_PROCESS): "PricingModel.answer([question])",
    (PRICING, HANDLE): "handle Pricing.suggest",
    (PRICING, CLIENT): "gateway MLClient -> suggest_many",
    (PRICING, HTTP): f"HTTP POST {ROUTE_PREFIX}/pricing",
    (SIMILAR, IN_PROCESS): f"SimilarListings.similar(id, {SIMILAR_LIMIT})",
    (SIMILAR, HANDLE): "handle Recommender.similar",
    (SIMILAR, CLIENT): "gateway MLClient -> similar_many",
    (SIMILAR, HTTP): f"HTTP GET {ROUTE_PREFIX}/similar",
}
STRATEGIES = ("owner's price", "category median", "suggested", "truth-optimal on the grid")


@dataclass(frozen=True)
class Options:
    users: int
    listings: int
    rentals: int
    seed: int
    rounds: int
    requests: int
    throughput_requests: int
    concurrency: int
    uplift_listings: int
    uplift_periods: int
    throughput_replicas: int  # Pricing held at this many for the throughput runs; 0: autoscaling as deployed


# ============================================================================ the stack


@contextmanager
def embedded_stack(root: Path) -> Iterator[str]:
    """Postgres (fsync off: a throwaway cluster) and a local Ray head; yields the database URL.
    Stops Serve, Ray and Postgres, in that order (the replicas hold Postgres connections)."""
    postgres = EmbeddedPostgres(root / "postgres", durable=False)
    # Ray's Unix sockets must stay under ~107 bytes: its own short directory in /tmp.
    ray_dir = tempfile.mkdtemp(prefix="shr-ray-")
    try:
        database_url = postgres.start()
        ray.init(num_cpus=2, namespace=RAY_NAMESPACE, _node_ip_address="127.0.0.1", include_dashboard=False,
                 _temp_dir=ray_dir, logging_level=logging.WARNING, log_to_driver=False)
        yield database_url
    finally:
        # Ray reports the controller's killed tasks as it goes down: to stderr, not among the tables.
        with redirect_stdout(sys.stderr):
            if ray.is_initialized():
                with suppress(Exception):  # Serve never started (a failure before the deploy)
                    serve.shutdown()  # type: ignore[no-untyped-call]
                ray.shutdown()
        postgres.stop()
        shutil.rmtree(ray_dir, ignore_errors=True)


def _app_status() -> tuple[str, str]:
    app = serve.status().applications.get(APP_NAME)
    return (str(app.status), str(app.message)) if app is not None else ("NOT_STARTED", "")


async def wait_running(started: float) -> float:
    """Wait for the app to be RUNNING (every replica has loaded its model and, for the
    Recommender, built its index); seconds since `started`."""
    while True:
        status, message = await asyncio.to_thread(_app_status)
        if status.endswith("RUNNING"):
            return time.perf_counter() - started
        if status.endswith("DEPLOY_FAILED") or status.endswith("UNHEALTHY"):
            raise RuntimeError(f"Serve app {APP_NAME!r} {status}: {message}")
        if time.perf_counter() - started > DEPLOY_TIMEOUT_SECS:
            raise TimeoutError(f"Serve app {APP_NAME!r} still {status} after {DEPLOY_TIMEOUT_SECS:.0f} s: {message}")
        await asyncio.sleep(0.5)


async def deploy_and_wait(database_url: str, model_dir: Path, port: int) -> float:
    """Deploy the app as `sharehub` does; seconds until it is RUNNING."""
    started = time.perf_counter()
    await asyncio.to_thread(deploy, database_url, str(model_dir), http_host="127.0.0.1", http_port=port)
    return await wait_running(started)


async def pin_pricing(database_url: str, model_dir: Path, replicas: int) -> float:
    """The same app again with Pricing's autoscaling held at `replicas` (min = max), so the
    throughput runs compare batched and unbatched on the same replicas; a redeploy (Serve
    restarts the replicas), seconds until RUNNING."""
    started = time.perf_counter()
    scaling = {**AUTOSCALING, "min_replicas": replicas, "max_replicas": replicas}
    app = HTTP_INGRESS.bind(PRICING_DEPLOYMENT.options(autoscaling_config=scaling).bind(database_url, str(model_dir)),
                            RECOMMENDER_DEPLOYMENT.bind(database_url, str(model_dir)))
    await asyncio.to_thread(serve.run, app, name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False)
    return await wait_running(started)


def _replica_pids(deployment: str) -> list[int]:
    """The processes of the deployment's replicas (Ray names them ray::ServeReplica:<app>:<name>)."""
    title = f"ServeReplica:{APP_NAME}:{deployment}"
    pids = []
    for process in psutil.process_iter(["cmdline"]):
        with suppress(psutil.Error):
            if any(title in part for part in process.info["cmdline"] or ()):
                pids.append(process.pid)
    return pids


def _cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _running_replicas(deployment: str) -> int:
    app = serve.status().applications.get(APP_NAME)
    if app is None or deployment not in app.deployments:
        return 0
    states = app.deployments[deployment].replica_states
    return sum(count for state, count in states.items() if getattr(state, "value", state) == "RUNNING")


# ============================================================================ questions


@dataclass(frozen=True)
class Asked:
    listing: MarketListing
    question: PriceQuestion
    payload: dict[str, Any]  # the same question on the wire (what the gateway sends)


def wire_facts(facts: ListingFacts) -> dict[str, Any]:
    return {"category_id": facts.category_id, "city": facts.city, "rental_unit": facts.rental_unit,
            "price_per_unit": facts.price_per_unit, "deposit": facts.deposit, "photos": facts.photos,
            "instant_book": facts.instant_book, "quantity": facts.quantity}


def ask(listing: MarketListing, now: datetime, rng: random.Random) -> Asked:
    """A future period for the listing, its length and lead time drawn as the seed draws them
    (sharehub/seed/rentals.py), asked now."""
    unit = listing.facts.rental_unit
    length = LENGTHS[unit].pick(rng)
    day = local_day(now + LEAD_MEAN[unit] * rng.expovariate(1.0)) + timedelta(days=1)
    if unit == "day":
        start = day_start(day)
        end = start + timedelta(days=length)
    else:
        start = day_start(day) + timedelta(hours=rng.randint(9, max(9, 21 - length)))
        end = start + timedelta(hours=length)
    question = PriceQuestion(listing.facts, start, end, asked_at=now)
    payload = {"listing": wire_facts(listing.facts), "start": start.isoformat(), "end": end.isoformat(),
               "asked_at": now.isoformat(), "has_price": True}
    return Asked(listing, question, payload)


# ============================================================================ the true demand model


@dataclass(frozen=True)
class TrueDemand:
    """sharehub/seed/demand.py as a probability: P(booked on a day) = 1 - exp(-k w)."""
    medians: dict[tuple[str, str], float]  # (category, unit) -> median price over published listings
    k: float
    booked_days: int
    listing_days: int

    def median(self, facts: ListingFacts) -> float:
        return self.medians[(facts.category_id, facts.rental_unit)]

    def weight(self, facts: ListingFacts, price: float, day: date) -> float:
        return (demand.listing_weight(facts.category_id, facts.city, price / self.median(facts))
                * demand.day_weight(facts.category_id, facts.rental_unit, day.month, day.weekday()))

    def probability(self, facts: ListingFacts, price: float, day: date) -> float:
        return 1.0 - math.exp(-self.k * self.weight(facts, price, day))


def true_demand(market: Market) -> TrueDemand:
    """The medians as the seed computes them, and k from the history: booked listing-days (a
    booked rental starting that day, as ml/dataset.py labels them) over the sum of w over every
    listing-day from the day after publication (at most HISTORY_DAYS back) to yesterday, each
    listing at its own price."""
    prices: dict[tuple[str, str], list[int]] = defaultdict(list)
    for listing in market.listings:
        prices[(listing.facts.category_id, listing.facts.rental_unit)].append(listing.facts.price_per_unit)
    medians = {key: float(statistics.median(values)) for key, values in prices.items()}
    today = local_day(market.now)
    first = today - timedelta(days=HISTORY_DAYS)
    days = [first + timedelta(days=i) for i in range(HISTORY_DAYS)]
    cumulative: dict[tuple[str, str], np.ndarray] = {}
    total, listing_days = 0.0, 0
    for listing in market.listings:
        facts = listing.facts
        offset = max(0, (local_day(listing.published_at) + timedelta(days=1) - first).days)
        if offset >= HISTORY_DAYS:
            continue
        key = (facts.category_id, facts.rental_unit)
        if key not in cumulative:
            weights = [demand.day_weight(facts.category_id, facts.rental_unit, d.month, d.weekday()) for d in days]
            cumulative[key] = np.concatenate([[0.0], np.cumsum(weights)])
        ratio = facts.price_per_unit / medians[key]
        total += demand.listing_weight(facts.category_id, facts.city, ratio) * float(
            cumulative[key][-1] - cumulative[key][offset])
        listing_days += HISTORY_DAYS - offset
    published = {listing.id for listing in market.listings}
    booked = {(r.listing_id, local_day(r.start_at)) for r in market.rentals
              if r.booked and r.listing_id in published and first <= local_day(r.start_at) < today}
    return TrueDemand(medians, len(booked) / total if total else 0.0, len(booked), listing_days)


@dataclass(frozen=True)
class Scores:
    auc: float | None
    calibration_error: float | None
    log_loss: float | None


def truth_on_holdout(market: Market, truth: TrueDemand, seed: int) -> Scores:
    """The training holdout again (same rows, same seed, same split) scored by the truth, every
    listing-day at the listing's own price (the price the seed drew requests with)."""
    _, holdout = booking_rows(market, seed=seed).split_by_time(HOLDOUT_SHARE)
    by_id = {listing.id: listing for listing in market.listings}
    predicted = np.array([truth.probability(by_id[listing_id].facts, by_id[listing_id].facts.price_per_unit, day)
                          for listing_id, day in zip(holdout.listing_ids, holdout.days, strict=True)])
    return Scores(auc(predicted, holdout.labels),
                  calibration_error(predicted, holdout.labels, weights=holdout.weights),
                  log_loss(predicted, holdout.labels, weights=holdout.weights))


@dataclass(frozen=True)
class Strategy:
    revenue: float  # kopecks, expected, summed over the questions
    probability: float  # mean P(booked)
    price_ratio: float  # mean price / category median


@dataclass(frozen=True)
class Uplift:
    questions: int
    strategies: dict[str, Strategy]
    # elastic / inelastic categories -> (questions, suggested / owner revenue, mean suggested price ratio)
    by_elasticity: dict[str, tuple[int, float, float]]
    beats_owner: float  # share of questions where the suggestion earns more than the owner's price


def revenue_uplift(model: PricingModel, truth: TrueDemand, asked: Sequence[Asked]) -> Uplift:
    answers = model.answer([a.question for a in asked])
    per: dict[str, list[tuple[float, float, float]]] = {name: [] for name in STRATEGIES}  # (revenue, P, ratio)
    groups: dict[str, list[tuple[float, float, float]]] = defaultdict(list)  # (suggested, owner, ratio)
    for a, answer in zip(asked, answers, strict=True):
        facts, units = a.listing.facts, float(answer["units"])
        day, median = local_day(a.question.start), truth.median(facts)

        def outcome(price: float, facts: ListingFacts = facts, day: date = day, median: float = median,
                    units: float = units) -> tuple[float, float, float]:
            p = truth.probability(facts, price, day)
            return price * units * p, p, price / median

        grid = candidates(facts, model.comparables)
        prices = {"owner's price": float(facts.price_per_unit),
                  "category median": float(max(ROUND_TO, round(median / ROUND_TO) * ROUND_TO)),
                  "suggested": float(answer["price"]),
                  "truth-optimal on the grid": float(max(grid, key=lambda p: outcome(p)[0]))}
        results = {name: outcome(price) for name, price in prices.items()}
        for name, result in results.items():
            per[name].append(result)
        group = "elastic (> 1)" if demand.elasticity(facts.category_id) > 1 else "inelastic (< 1)"
        groups[group].append((results["suggested"][0], results["owner's price"][0], results["suggested"][2]))
    strategies = {name: Strategy(sum(r for r, _, _ in rows), statistics.mean(p for _, p, _ in rows),
                                 statistics.mean(x for _, _, x in rows)) for name, rows in per.items()}
    by_elasticity = {group: (len(rows), sum(s for s, _, _ in rows) / sum(o for _, o, _ in rows),
                             statistics.mean(x for _, _, x in rows)) for group, rows in sorted(groups.items())}
    beats = statistics.mean(s[0] > o[0] for s, o in zip(per["suggested"], per["owner's price"], strict=True))
    return Uplift(len(asked), strategies, by_elasticity, beats)


# ============================================================================ measurements


Op = Callable[[int], Awaitable[None]]


@dataclass
class Setup:
    published: int = 0
    rentals: int = 0
    seed_s: float = 0.0
    train_s: float = 0.0
    deploy_s: float = 0.0
    pin_s: float = 0.0
    versions: dict[str, int] = field(default_factory=dict)
    agreement: dict[str, int] = field(default_factory=dict)  # kind -> answers equal in-process and via the handle


@dataclass
class Throughput:
    runs: dict[str, list[RunResult]] = field(default_factory=dict)
    replicas: dict[str, list[int]] = field(default_factory=dict)  # RUNNING after each run
    replica_cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # per prediction, the replicas' processes
    client_cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # per prediction, this process
    reference: dict[str, list[RunResult]] = field(default_factory=dict)  # the model here: 1 and MAX_BATCH per call


@dataclass
class Results:
    setup: Setup
    latency: dict[tuple[str, str], list[RunResult]]
    throughput: Throughput
    reports: dict[str, TrainingReport]
    truth: TrueDemand
    truth_scores: Scores
    uplift: Uplift


async def load_promoted(pool: Any, store: ModelStore, market: Market) -> tuple[PricingModel, SimilarListings]:
    """The promoted versions, in this process, as the replicas load them."""
    pricing_row = await ml_models.promoted(pool, PRICING)
    similar_row = await ml_models.promoted(pool, SIMILAR)
    if pricing_row is None or similar_row is None:
        raise RuntimeError("training promoted no pricing or no similar model: nothing to serve (see the decisions)")
    model = PricingModel.from_bytes(store.get(pricing_row["artifact_uri"], pricing_row["artifact_sha256"]))
    weights = SimilarWeights.from_bytes(store.get(similar_row["artifact_uri"], similar_row["artifact_sha256"]))
    return model, market.similar_listings(weights)


class Paths:
    """Every timed call, by (kind, path), over the same questions and listings."""

    def __init__(self, model: PricingModel, index: SimilarListings, session: aiohttp.ClientSession, base_url: str,
                 asked: Sequence[Asked]) -> None:
        self.model, self.index, self.session, self.base_url = model, index, session, base_url
        self.asked = list(asked)
        self.ids = [str(a.listing.id) for a in asked]
        self.pricing = serve.get_deployment_handle("Pricing", app_name=APP_NAME)
        self.recommender = serve.get_deployment_handle("Recommender", app_name=APP_NAME)
        self.client = MLClient(timeout_secs=60.0)
        self.batches = [[a.question for a in self.asked[i:i + MAX_BATCH]]
                        for i in range(0, len(self.asked) - MAX_BATCH + 1, MAX_BATCH)] or [
                            [a.question for a in self.asked]]

    def latency_ops(self) -> dict[tuple[str, str], Op]:
        n = len(self.asked)

        async def pricing_in_process(i: int) -> None:
            self.model.answer([self.asked[i % n].question])

        async def pricing_handle(i: int) -> None:
            _ok(await self.pricing.suggest.remote(self.asked[i % n].payload))

        async def pricing_client(i: int) -> None:
            _ok(await self.client.call("Pricing", "suggest", self.asked[i % n].payload, cache_key=f"l{i}"))

        async def similar_client(i: int) -> None:
            _ok(await self.client.call("Recommender", "similar", (self.ids[i % n], SIMILAR_LIMIT), cache_key=f"s{i}"))

        async def pricing_http(i: int) -> None:
            async with self.session.post(f"{self.base_url}/pricing", json=self.asked[i % n].payload) as response:
                _ok(await response.json(), response.status)

        async def similar_in_process(i: int) -> None:
            self.index.similar(self.ids[i % n], SIMILAR_LIMIT)

        async def similar_handle(i: int) -> None:
            _ok(await self.recommender.similar.remote((self.ids[i % n], SIMILAR_LIMIT)))

        async def similar_http(i: int) -> None:
            params = {"listing_id": self.ids[i % n], "limit": str(SIMILAR_LIMIT)}
            async with self.session.get(f"{self.base_url}/similar", params=params) as response:
                _ok(await response.json(), response.status)

        return {(PRICING, IN_PROCESS): pricing_in_process, (PRICING, HANDLE): pricing_handle,
                (PRICING, CLIENT): pricing_client, (PRICING, HTTP): pricing_http,
                (SIMILAR, IN_PROCESS): similar_in_process, (SIMILAR, HANDLE): similar_handle,
                (SIMILAR, CLIENT): similar_client, (SIMILAR, HTTP): similar_http}

    def throughput_ops(self) -> dict[str, Op]:
        n = len(self.asked)

        async def batched(i: int) -> None:
            _ok(await self.pricing.suggest.remote(self.asked[i % n].payload))

        async def unbatched(i: int) -> None:
            _ok(await self.pricing.suggest_unbatched.remote(self.asked[i % n].payload))

        async def client_batched(i: int) -> None:  # what a gateway does: ml/client.py batches itself
            _ok(await self.client.call("Pricing", "suggest", self.asked[i % n].payload, cache_key=str(i)))

        return {BATCHED: batched, UNBATCHED: unbatched, CLIENT_BATCHED: client_batched}

    def reference_ops(self) -> dict[str, tuple[Op, int]]:
        """The model alone: (op, questions per call)."""
        n, batches = len(self.asked), self.batches

        async def one(i: int) -> None:
            self.model.answer([self.asked[i % n].question])

        async def batch(i: int) -> None:
            self.model.answer(batches[i % len(batches)])

        return {"1": (one, 1), str(len(batches[0])): (batch, len(batches[0]))}

    async def agreement(self) -> dict[str, int]:
        """How many of the first questions get the same answer in this process and from Serve."""
        asked = self.asked[:AGREEMENT_CHECKS]
        local = self.model.answer([a.question for a in asked])
        served = [await self.pricing.suggest.remote(a.payload) for a in asked]
        pricing = sum(mine["price"] == theirs.get("price") and mine["range"] == theirs.get("range")
                      for mine, theirs in zip(local, served, strict=True))
        similar = 0
        for listing_id in self.ids[:AGREEMENT_CHECKS]:
            answer = await self.recommender.similar.remote((listing_id, SIMILAR_LIMIT))
            mine = [other for other, _ in self.index.similar(listing_id, SIMILAR_LIMIT)]
            similar += [item["id"] for item in answer.get("items", [])] == mine
        return {PRICING: pricing, SIMILAR: similar}


def _ok(answer: dict[str, Any], status: int = 200) -> None:
    if status != 200 or "error" in answer:
        raise RuntimeError(f"ml-core answered {status}: {answer}")


async def latency_rounds(paths: Paths, opts: Options) -> dict[tuple[str, str], list[RunResult]]:
    ops = paths.latency_ops()
    latency: dict[tuple[str, str], list[RunResult]] = {key: [] for key in ops}
    for round_no in range(opts.rounds):
        keys = list(ops)
        keys = keys[round_no % len(keys):] + keys[:round_no % len(keys)]  # each round starts elsewhere
        for key in keys:
            latency[key].append(await measure(ops[key], requests=opts.requests, concurrency=1))
        print(f"  latency round {round_no + 1}/{opts.rounds}: p50 " + ", ".join(
            f"{kind} {path} {latency[(kind, path)][-1].p50_ms:.2f} ms" for kind, path in ops), file=sys.stderr)
    return latency


async def throughput_rounds(paths: Paths, opts: Options) -> Throughput:
    ops, reference_ops = paths.throughput_ops(), paths.reference_ops()
    t = Throughput({k: [] for k in ops}, {k: [] for k in ops}, {k: [] for k in ops}, {k: [] for k in ops},
                   {k: [] for k in reference_ops})
    me = psutil.Process()
    for op in ops.values():  # warm-up
        await measure(op, requests=opts.concurrency * 2, concurrency=opts.concurrency)
    for round_no in range(opts.rounds):
        order = (BATCHED, UNBATCHED, CLIENT_BATCHED) if round_no % 2 == 0 else (CLIENT_BATCHED, UNBATCHED, BATCHED)
        for name in order:
            pids = await asyncio.to_thread(_replica_pids, "Pricing")
            replica_cpu, client_cpu = _cpu_seconds(pids), sum(me.cpu_times()[:2])
            t.runs[name].append(await measure(ops[name], requests=opts.throughput_requests,
                                              concurrency=opts.concurrency))
            t.replica_cpu_ms[name].append((_cpu_seconds(pids) - replica_cpu) * 1000 / opts.throughput_requests)
            t.client_cpu_ms[name].append((sum(me.cpu_times()[:2]) - client_cpu) * 1000 / opts.throughput_requests)
            t.replicas[name].append(await asyncio.to_thread(_running_replicas, "Pricing"))
        for name, (op, per_call) in reference_ops.items():
            t.reference[name].append(await measure(op, requests=max(20, opts.throughput_requests // per_call),
                                                   concurrency=1))
        b, u, c = t.runs[BATCHED][-1], t.runs[UNBATCHED][-1], t.runs[CLIENT_BATCHED][-1]
        print(f"  throughput round {round_no + 1}/{opts.rounds}: batched {b.ops_per_sec:.0f}/s, unbatched "
              f"{u.ops_per_sec:.0f}/s, client-batched {c.ops_per_sec:.0f}/s "
              f"(replicas {t.replicas[BATCHED][-1]}/{t.replicas[UNBATCHED][-1]}/{t.replicas[CLIENT_BATCHED][-1]})",
              file=sys.stderr)
    return t


async def run(database_url: str, root: Path, opts: Options) -> Results:
    setup = Setup()
    now = datetime.now(UTC)
    rng = random.Random(opts.seed)
    await migrate(database_url, load_settings().migrations_dir)
    pool = await create_pool(database_url, max_size=2)
    try:
        started = time.perf_counter()
        seeded = await seed_database(pool, users=opts.users, listings=opts.listings, rentals=opts.rentals,
                                     seed=opts.seed, now=now)
        setup.seed_s, setup.rentals = time.perf_counter() - started, seeded.rentals
        store = ModelStore(root / "models")
        started = time.perf_counter()
        reports = {r.kind: r for r in await train_models(pool, store, ConsoleReporter(), now=now, seed=opts.seed)}
        setup.train_s = time.perf_counter() - started
        setup.versions = {kind: report.version for kind, report in reports.items()}
        market = await load_market(pool, now=now)
        setup.published = len(market.listings)
        model, index = await load_promoted(pool, store, market)
        print("truth: the true demand model on the history, the holdout and the sample...", file=sys.stderr)
        truth = true_demand(market)
        truth_scores = truth_on_holdout(market, truth, opts.seed)
        sample = rng.sample(market.listings, min(opts.uplift_listings, len(market.listings)))
        uplift = revenue_uplift(model, truth, [ask(listing, now, rng) for listing in sample
                                               for _ in range(opts.uplift_periods)])
    finally:
        await pool.close()

    port = free_port()
    print(f"deploying the Serve app {APP_NAME!r} on port {port}...", file=sys.stderr)
    setup.deploy_s = await deploy_and_wait(database_url, root / "models", port)
    asked = [ask(listing, now, rng) for listing in rng.sample(market.listings, min(QUESTIONS, len(market.listings)))]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        paths = await asyncio.to_thread(Paths, model, index, session, f"http://127.0.0.1:{port}{ROUTE_PREFIX}", asked)
        setup.agreement = await paths.agreement()
        print("latency: warm-up, then rounds...", file=sys.stderr)
        for op in paths.latency_ops().values():
            await measure(op, requests=WARM_UP_CALLS, concurrency=1)
        latency = await latency_rounds(paths, opts)
        if opts.throughput_replicas:
            print(f"throughput: Pricing held at {opts.throughput_replicas} replica(s)...", file=sys.stderr)
            setup.pin_s = await pin_pricing(database_url, root / "models", opts.throughput_replicas)
        throughput = await throughput_rounds(paths, opts)
    return Results(setup, latency, throughput, reports, truth, truth_scores, uplift)


# ============================================================================ results


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def print_setup(opts: Options, r: Results) -> None:
    s = r.setup
    print(f"\nShareHub {revision()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"Ray {ray.__version__} (local, 2 CPUs)")
    print(f"market: {opts.users} users, {opts.listings} listings ({s.published} published), {s.rentals} rentals "
          f"(seed {opts.seed}) in {s.seed_s:.1f} s; training (both kinds) {s.train_s:.1f} s; "
          f"Serve app RUNNING {s.deploy_s:.1f} s after deploy()"
          + (f", {s.pin_s:.1f} s after the redeploy for throughput" if opts.throughput_replicas else ""))
    print(f"promoted: pricing v{s.versions.get(PRICING)}, similar v{s.versions.get(SIMILAR)}; answers equal in "
          f"this process and through Serve: pricing {s.agreement.get(PRICING)}/{AGREEMENT_CHECKS}, "
          f"similar {s.agreement.get(SIMILAR)}/{AGREEMENT_CHECKS}")


def print_latency(opts: Options, r: Results) -> None:
    print(f"\nLatency, one request at a time: {opts.requests} requests per path x {opts.rounds} rounds, medians; "
          f"ms; baseline: in-process")
    print(f"{'kind':<8} {'path':<10} {'call':<36} {'p50':>8} {'p99':>8} {'calls/s':>8} "
          f"{'p50 added':>10} {'p50 vs base':>12}")
    for kind in (PRICING, SIMILAR):
        base = median_result(r.latency[(kind, IN_PROCESS)])
        for path in (IN_PROCESS, HANDLE, CLIENT, HTTP):
            m = median_result(r.latency[(kind, path)])
            print(f"{kind:<8} {path:<10} {LATENCY_NAMES[(kind, path)]:<36} {m.p50_ms:>8.3f} {m.p99_ms:>8.3f} "
                  f"{m.ops_per_sec:>8.0f} {m.p50_ms - base.p50_ms:>+10.3f} {m.p50_ms / base.p50_ms:>11.1f}x")


def print_throughput(opts: Options, r: Results) -> None:
    t = r.throughput
    base = statistics.median(x.ops_per_sec for x in t.runs[UNBATCHED])
    held = f"Pricing held at {opts.throughput_replicas} replica(s)" if opts.throughput_replicas else \
        "Pricing autoscaling as deployed"
    print(f"\nPricing throughput: {opts.throughput_requests} predictions per run, {opts.concurrency} in flight "
          f"through the handle, {held}, medians of {opts.rounds} rounds; baseline: suggest_unbatched")
    print(f"{'path':<52} {'pred/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'replicas':>9} {'CPU ms/pred':>12} "
          f"{'vs base':>8}")
    print(f"{'':<52} {'':>8} {'':>8} {'':>8} {'':>9} {'rep. + here':>12}")
    for name, label in ((BATCHED, f"handle: Pricing.suggest (@serve.batch, <= {MAX_BATCH})"),
                        (UNBATCHED, "handle: Pricing.suggest_unbatched (1 per model call)"),
                        (CLIENT_BATCHED, "gateway client: MLClient -> Pricing.suggest_many")):
        m = median_result(t.runs[name])
        replicas = "/".join(map(str, sorted(set(t.replicas[name]))))
        cpu = f"{statistics.median(t.replica_cpu_ms[name]):.2f}+{statistics.median(t.client_cpu_ms[name]):.2f}"
        print(f"{label:<52} {m.ops_per_sec:>8.0f} {m.p50_ms:>8.2f} {m.p99_ms:>8.2f} {replicas:>9} {cpu:>12} "
              f"{m.ops_per_sec / base:>7.2f}x")
    for name, results in t.reference.items():
        per_call = int(name)
        m = median_result(results)
        rate = m.ops_per_sec * per_call
        print(f"{f'reference: in-process answer(), {per_call} per call':<52} {rate:>8.0f} {m.p50_ms:>8.2f} "
              f"{m.p99_ms:>8.2f} {'-':>9} {1000 / rate:>12.2f} {rate / base:>7.2f}x")
    print("  p50/p99: of one request under that load (for the references: of one model call); CPU: the Pricing\n"
          "  replica's processes + this process (the client), per prediction")


def print_models(r: Results) -> None:
    pricing, similar = r.reports[PRICING], r.reports[SIMILAR]
    m, logistic, truth = pricing.metrics, pricing.metrics.get("baseline_logistic", {}), r.truth_scores
    print(f"\nModels on the holdout (the latest {HOLDOUT_SHARE:.0%} of the history), from training's reports")
    print(f"pricing v{pricing.version}: {pricing.decision}")
    print(f"  {'rental probability':<26} {'model':>9} {'logistic':>9} {'true demand':>12}")
    print(f"  {'AUC (higher is better)':<26} {_f(m.get('auc')):>9} {_f(logistic.get('auc')):>9} "
          f"{_f(truth.auc):>12}")
    print(f"  {'calibration error':<26} {_f(m.get('calibration_error')):>9} "
          f"{_f(logistic.get('calibration_error')):>9} {_f(truth.calibration_error):>12}")
    print(f"  {'log-loss':<26} {_f(m.get('log_loss'), 5):>9} {_f(logistic.get('log_loss'), 5):>9} "
          f"{_f(truth.log_loss, 5):>12}")
    print(f"  price range coverage (10-90 %: ideal 0.80): {_f(m.get('range_coverage'))}; suggestion below an "
          f"unbooked day's price (higher is better): {_f(m.get('unbooked_below_share'))}; booked shortfall "
          f"(lower is better): {_f(m.get('booked_shortfall'))}; monotone in price: {m.get('monotone_in_price')}; "
          f"{m.get('boosting_rounds')} boosting rounds")
    s = similar.metrics
    print(f"similar v{similar.version}: {similar.decision}")
    print(f"  recall@10 over {s.get('pairs')} held-out co-bookings: model {_f(s.get('recall_at_10'))}, "
          f"popularity baseline {_f(s.get('baseline_popularity', {}).get('recall_at_10'))}, content only "
          f"{_f(s.get('content_only', {}).get('recall_at_10'))}")


def print_uplift(opts: Options, r: Results) -> None:
    u, t = r.uplift, r.truth
    base = u.strategies["owner's price"].revenue
    median = u.strategies["category median"].revenue
    print(f"\nRevenue under the true demand model: {u.questions} questions ({opts.uplift_periods} future periods "
          f"on each of {u.questions // max(1, opts.uplift_periods)} published listings); P = 1 - exp(-k w), "
          f"k = {t.k:.4f} from {t.booked_days} booked of {t.listing_days} listing-days; baseline: owner's price")
    print(f"{'price':<28} {'price/median':>12} {'mean P':>8} {'revenue/question':>17} {'vs owner':>9} "
          f"{'vs median':>10}")
    for name, s in u.strategies.items():
        print(f"{name:<28} {s.price_ratio:>12.2f} {s.probability:>8.4f} {s.revenue / u.questions / 100:>15,.0f} ₽ "
              f"{s.revenue / base:>8.3f}x {s.revenue / median:>9.3f}x")
    groups = "; ".join(f"{group} elasticity: {n} questions, {ratio:.3f}x the owner's revenue at {x:.2f}x the median"
                       for group, (n, ratio, x) in u.by_elasticity.items())
    print(f"  suggested, by category: {groups}")
    print(f"  the suggestion earns more than the owner's price on {u.beats_owner:.0%} of the questions")


def print_targets(r: Results) -> None:
    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\nTargets (from the tracker):")
    for kind, path in ((PRICING, HANDLE), (PRICING, CLIENT), (SIMILAR, HANDLE), (SIMILAR, CLIENT)):
        m = median_result(r.latency[(kind, path)])
        print(f"  {kind} {path} p50 <= {TARGET_HANDLE_P50_MS:.0f} ms: {m.p50_ms:.2f} ms - "
              f"{mark(m.p50_ms <= TARGET_HANDLE_P50_MS)}; p99 <= {TARGET_HANDLE_P99_MS:.0f} ms: {m.p99_ms:.2f} ms - "
              f"{mark(m.p99_ms <= TARGET_HANDLE_P99_MS)}")
    rate = statistics.median(x.ops_per_sec for x in r.throughput.runs[CLIENT_BATCHED])
    print(f"  >= {TARGET_BATCHED_PER_SEC:.0f} predictions/s batched (the gateway's client): {rate:.0f}/s - "
          f"{mark(rate >= TARGET_BATCHED_PER_SEC)}")
    metrics = r.reports[PRICING].metrics
    model_auc, logistic_auc = metrics.get("auc"), metrics.get("baseline_logistic", {}).get("auc")
    ok = model_auc is not None and logistic_auc is not None and model_auc > logistic_auc
    print(f"  AUC above logistic regression: {_f(model_auc)} vs {_f(logistic_auc)} - {mark(ok)}")
    error = metrics.get("calibration_error")
    print(f"  calibration error <= {TARGET_CALIBRATION_ERROR}: {_f(error)} - "
          f"{mark(error is not None and error <= TARGET_CALIBRATION_ERROR)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=300, help="renters and owners of the seeded market")
    parser.add_argument("--listings", type=int, default=3000)
    parser.add_argument("--rentals", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500, help="sequential requests per latency path and round")
    parser.add_argument("--throughput-requests", type=int, default=4000, help="predictions per throughput run")
    parser.add_argument("--concurrency", type=int, default=256, help="requests in flight for the throughput runs")
    parser.add_argument("--uplift-listings", type=int, default=1000, help="listings the revenue is simulated on")
    parser.add_argument("--uplift-periods", type=int, default=3, help="future periods asked per listing")
    parser.add_argument("--throughput-replicas", type=int, default=1,
                        help="Pricing replicas for the throughput runs (a redeploy); 0: its autoscaling as deployed")
    parser.add_argument("--smoke", action="store_true",
                        help="100 users, 600 listings, 2 500 rentals, 100 requests, 1 000 predictions, 1 round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.listings, args.rentals, args.rounds = 100, 600, 2500, 1
        args.requests, args.throughput_requests, args.uplift_listings = 100, 1000, 300
    opts = Options(args.users, args.listings, args.rentals, args.seed, args.rounds, args.requests,
                   args.throughput_requests, args.concurrency, args.uplift_listings, args.uplift_periods,
                   args.throughput_replicas)
    with tempfile.TemporaryDirectory(prefix="shr-bench-ml-") as tmp, embedded_stack(Path(tmp)) as database_url:
        results = uvloop.run(run(database_url, Path(tmp), opts))
    print_setup(opts, results)
    print_latency(opts, results)
    print_throughput(opts, results)
    print_models(results)
    print_uplift(opts, results)
    print_targets(results)


if __name__ == "__main__":
    main()

"""ml-core on Ray Serve: one application, `ml`, with two model deployments and an HTTP ingress.

- `Pricing` answers price questions (ml/pricing_model.py) for listings and drafts. The gateway
  sends the listing's facts, so it needs no database of its own for answering - only to learn
  which model version is promoted.
- `Recommender` answers "similar listings" over the published catalogue, which it loads from
  Postgres and rebuilds in the background every `refresh_secs`. A listing it has not seen yet
  (published a minute ago, or paused) is scored from the content the gateway sends with the
  query, in the index's own text space - a cold start gets neighbours at once, and no query
  ever waits for a rebuild.
- `MLHttp` is the ingress: POST /ml/pricing and GET /ml/similar on Serve's HTTP proxy, for
  services that do not go through the gateway.

Both model deployments micro-batch (`@serve.batch`): concurrent requests become one model call,
which is what makes a replica's throughput (the hop costs milliseconds, the model microseconds).
Each replica loads the promoted version at start and polls Postgres for a newer one every
`reload_secs`; a new version is loaded off the event loop and swapped in between two batches,
so a promotion reaches every replica in seconds without a restart or a failed request. With no
promoted model yet a replica is healthy and answers `{"error": "no_model"}` (the gateway's 503
`model_not_ready`), and picks the first version up when training promotes one."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from ml.artifacts import ModelStore
from ml.dataset import load_market
from ml.features import ListingFacts
from ml.pricing import PriceQuestion
from ml.pricing_model import PricingModel
from ml.similar import ListingContent, SimilarListings, SimilarWeights
from storage import ml_models

log = logging.getLogger("sharehub.ml.serving")

APP_NAME = "ml"
ROUTE_PREFIX = "/ml"
MAX_BATCH = 64
# How long a lone request waits for company: every request alone pays it, so it stays short
# (the gateway's client batches by itself and does not wait at all: ml/batching.py).
BATCH_WAIT_SECS = 0.0005
# Scale on requests in flight per replica; at most two replicas of each on the 2-core dev box
# (the Helm values raise it for a cluster).
AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 32,
               "upscale_delay_s": 10, "downscale_delay_s": 120}
# A similar-listings query: (listing id, limit) or (listing id, limit, ListingContent fields).
SimilarQuery = tuple[Any, ...]


class _PromotedModel:
    """The promoted version of one kind in this replica, and the loop that follows promotions."""

    def __init__(self, kind: str, database_url: str, reload_secs: float,
                 load: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
        self.kind, self.database_url, self.reload_secs, self._load = kind, database_url, reload_secs, load
        self.version: int | None = None
        self.model: Any = None
        self.pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
        await self.check()
        self._task = asyncio.create_task(self._follow())

    async def check(self) -> None:
        assert self.pool is not None
        row = await ml_models.promoted(self.pool, self.kind)
        if row is not None and row["version"] != self.version:
            self.model = await self._load(row)
            self.version = row["version"]
            log.info("loaded %s v%s", self.kind, self.version)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.reload_secs)
            try:
                await self.check()
            except Exception:  # Postgres away or a bad artifact: keep serving the loaded version
                log.warning("checking for a new %s model failed", self.kind, exc_info=True)

    def healthy(self) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError(f"the {self.kind} model follower is not running")


def _facts(data: dict[str, Any]) -> ListingFacts:
    return ListingFacts(category_id=str(data["category_id"]), city=str(data["city"]),
                        rental_unit=str(data["rental_unit"]), price_per_unit=int(data["price_per_unit"]),
                        deposit=int(data.get("deposit", 0)), photos=int(data.get("photos", 0)),
                        instant_book=bool(data.get("instant_book", False)), quantity=int(data.get("quantity", 1)))


def price_question(payload: dict[str, Any]) -> PriceQuestion:
    """The wire form of a question (what the gateway sends) as the model's."""
    return PriceQuestion(listing=_facts(payload["listing"]), start=datetime.fromisoformat(payload["start"]),
                         end=datetime.fromisoformat(payload["end"]),
                         asked_at=datetime.fromisoformat(payload["asked_at"]),
                         has_price=bool(payload.get("has_price", True)),
                         centre=float(payload["centre"]) if payload.get("centre") else None)


class Pricing:
    async def __init__(self, database_url: str, model_dir: str, reload_secs: float = 5.0) -> None:  # type: ignore[misc]
        store = ModelStore(Path(model_dir))

        async def load(row: dict[str, Any]) -> PricingModel:
            data = await asyncio.to_thread(store.get, row["artifact_uri"], row["artifact_sha256"])
            return await asyncio.to_thread(PricingModel.from_bytes, data)

        self.promoted = _PromotedModel("pricing", database_url, reload_secs, load)
        await self.promoted.start()

    async def check_health(self) -> None:
        self.promoted.healthy()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_SECS)
    async def suggest(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._answer(payloads)

    async def suggest_many(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Questions a caller batched itself (the gateway's client does, ml/client.py): one
        request and one model call for them all, no batching window to wait for."""
        return self._answer(payloads)

    async def suggest_unbatched(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The same answer, one question per model call (what `bench/ml.py` compares batching with)."""
        return self._answer([payload])[0]

    def _answer(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model, version = self.promoted.model, self.promoted.version
        if model is None:
            return [{"error": "no_model"} for _ in payloads]
        answers: list[dict[str, Any] | None] = [None] * len(payloads)
        questions, where = [], []
        for i, payload in enumerate(payloads):
            try:
                questions.append(price_question(payload))
                where.append(i)
            except (KeyError, TypeError, ValueError) as exc:  # one bad question never fails its batch
                answers[i] = {"error": "bad_question", "detail": str(exc)}
        for i, answer in zip(where, model.answer(questions), strict=True):
            answers[i] = {**answer, "model_version": version}
        return [answer or {"error": "bad_question"} for answer in answers]


class Recommender:
    async def __init__(self, database_url: str, model_dir: str, reload_secs: float = 5.0,  # type: ignore[misc]
                       refresh_secs: float = 60.0) -> None:
        store = ModelStore(Path(model_dir))

        async def load(row: dict[str, Any]) -> SimilarWeights:
            data = await asyncio.to_thread(store.get, row["artifact_uri"], row["artifact_sha256"])
            return SimilarWeights.from_bytes(data)

        self.promoted = _PromotedModel("similar", database_url, reload_secs, load)
        await self.promoted.start()
        self.refresh_secs = refresh_secs
        self.index: SimilarListings | None = None
        self._built_at = 0.0
        self._built_with: SimilarWeights | None = None
        self._rebuilding: asyncio.Task[None] | None = None
        await self._rebuild()

    async def _rebuild(self) -> None:
        """The published catalogue and every booking, from Postgres, indexed with the promoted
        weights; the old index answers until the new one is swapped in."""
        assert self.promoted.pool is not None
        weights = self.promoted.model
        if weights is None:
            return
        market = await load_market(self.promoted.pool, now=datetime.now().astimezone())
        self.index = await asyncio.to_thread(market.similar_listings, weights)
        self._built_at, self._built_with = time.monotonic(), weights

    def _fresh_index(self) -> SimilarListings | None:
        """The index, rebuilt in the background when it is old or the weights changed; the old
        one answers meanwhile (a listing published since is scored from its content)."""
        due = time.monotonic() - self._built_at > self.refresh_secs or self._built_with is not self.promoted.model
        if due and (self._rebuilding is None or self._rebuilding.done()):
            self._rebuilding = asyncio.create_task(self._rebuild())
        return self.index

    async def check_health(self) -> None:
        self.promoted.healthy()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_SECS)
    async def similar(self, queries: list[SimilarQuery]) -> list[dict[str, Any]]:
        return self._similar(queries)

    async def similar_many(self, queries: list[SimilarQuery]) -> list[dict[str, Any]]:
        """Queries a caller batched itself (the gateway's client), answered in one request."""
        return self._similar(queries)

    def _similar(self, queries: list[SimilarQuery]) -> list[dict[str, Any]]:
        """(listing id, limit[, its content]): a listing the index has not seen is answered from
        the content the caller sent, or is `unknown_listing` without one."""
        index = self._fresh_index()
        if index is None:
            return [{"error": "no_model"} for _ in queries]
        answers: list[dict[str, Any]] = []
        for listing_id, limit, *content in queries:
            if listing_id in index.position:
                found = index.similar(str(listing_id), int(limit))
            elif content and content[0]:
                found = index.similar_to(ListingContent(**content[0]), int(limit))
            else:
                answers.append({"error": "unknown_listing"})
                continue
            items = [{"id": other, "score": round(score, 4)} for other, score in found]
            answers.append({"items": items, "model_version": self.promoted.version})
        return answers

    async def comparables(self, query: tuple[str, str, str, int]) -> dict[str, Any]:
        """(text, category, rental unit, k): the published listings nearest to a draft's text."""
        text, category_id, rental_unit, k = query
        index = self._fresh_index()
        if index is None:
            return {"error": "no_model"}
        return {"items": [{"id": listing.id, "title": listing.title, "price_per_unit": listing.price_per_unit,
                           "similarity": round(score, 4)}
                          for listing, score in index.like_text(text, category_id, rental_unit, k) if score > 0],
                "model_version": self.promoted.version}


class MLHttp:
    """POST /ml/pricing (a question as JSON), GET /ml/similar?listing_id=&limit=."""

    def __init__(self, pricing: Any, recommender: Any) -> None:
        self.pricing, self.recommender = pricing, recommender

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.removeprefix(ROUTE_PREFIX).rstrip("/")
        if path == "/pricing" and request.method == "POST":
            try:
                question = await request.json()
            except ValueError:
                return JSONResponse({"error": "bad_question", "detail": "the body is not JSON"}, status_code=400)
            if not isinstance(question, dict):
                return JSONResponse({"error": "bad_question", "detail": "send one question object"}, status_code=400)
            answer = await self.pricing.suggest.remote(question)
        elif path == "/similar" and request.method == "GET":
            try:
                limit = int(request.query_params.get("limit", "10"))
            except ValueError:
                return JSONResponse({"error": "bad_question", "detail": "limit must be a number"}, status_code=400)
            answer = await self.recommender.similar.remote((request.query_params.get("listing_id", ""),
                                                            max(1, min(limit, 50))))
        else:
            return JSONResponse({"error": "not_found"}, status_code=404)
        status = {"no_model": 503, "bad_question": 400, "unknown_listing": 404}.get(answer.get("error"), 200)
        return JSONResponse(answer, status_code=status)


# No access log line per request: at thousands of questions a second it was a visible share of a
# replica's CPU (bench/ml.py); errors are still logged.
_QUIET = {"enable_access_log": False, "log_level": "WARNING"}
_MODEL_REPLICAS: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0}, "max_ongoing_requests": 256,
                                   "autoscaling_config": AUTOSCALING, "health_check_period_s": 10,
                                   "health_check_timeout_s": 30, "logging_config": _QUIET}
PRICING = serve.deployment(name="Pricing", **_MODEL_REPLICAS)(Pricing)
RECOMMENDER = serve.deployment(name="Recommender", **_MODEL_REPLICAS)(Recommender)
HTTP_INGRESS = serve.deployment(name="MLHttp", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512,
                                logging_config=_QUIET)(MLHttp)


def build_app(database_url: str, model_dir: str, *, reload_secs: float = 5.0, refresh_secs: float = 60.0
              ) -> serve.Application:
    pricing = PRICING.bind(database_url, model_dir, reload_secs)
    recommender = RECOMMENDER.bind(database_url, model_dir, reload_secs, refresh_secs)
    return HTTP_INGRESS.bind(pricing, recommender)


def app_builder(args: dict[str, str]) -> serve.Application:
    """For a Serve config file (`serve deploy deploy/serve/ml.yaml`): arguments from its `args`,
    else the environment of the Ray nodes (DATABASE_URL, SHAREHUB_MODEL_DIR) - which keeps the
    database password out of the Serve config the dashboard shows."""
    database_url = args.get("database_url") or os.environ["DATABASE_URL"]
    model_dir = args.get("model_dir") or os.environ["SHAREHUB_MODEL_DIR"]
    return build_app(database_url, model_dir, reload_secs=float(args.get("reload_secs", 5)),
                     refresh_secs=float(args.get("refresh_secs", 60)))


def deploy(database_url: str, model_dir: str, *, http_host: str = "127.0.0.1", http_port: int = 8000,
           reload_secs: float = 5.0, refresh_secs: float = 60.0) -> None:
    """Start Serve on the connected cluster (if it is not running) and (re)deploy the app."""
    serve.start(http_options={"host": http_host, "port": http_port})
    serve.run(build_app(database_url, model_dir, reload_secs=reload_secs, refresh_secs=refresh_secs),
              name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False)

"""The gateway's way to ml-core: Ray Serve deployment handles, a deadline, and a stale fallback.

Every call has `timeout_secs`. When Serve is down, slow or has no model, the caller gets the
last good answer to the same question (kept per gateway process for `stale_secs`) marked
`"stale": true`, or - with none - a 503 problem with Retry-After. Never a hang: the handle is
looked up off the event loop with the same deadline, and a call past it is cancelled. Price
questions and similar-listing queries are batched by the client itself (ml/batching.py) into
`Pricing.suggest_many` and `Recommender.similar_many`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

from prometheus_client import Histogram

from ml.batching import CallBatcher, Send
from ml.serving import APP_NAME
from sharehub.errors import ApiError

log = logging.getLogger(__name__)

ML_SECONDS = Histogram("sharehub_ml_call_seconds", "Gateway to ml-core (Ray Serve) calls",
                       ["deployment", "outcome"],
                       buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
_CACHE_SIZE = 10_000
# Methods the client batches itself: (deployment, method) -> the method taking a list.
BATCHED = {("Pricing", "suggest"): "suggest_many", ("Recommender", "similar"): "similar_many"}


def ml_unavailable(code: str = "ml_unavailable",
                   detail: str = "Suggestions are unavailable right now; try again shortly.") -> ApiError:
    error = ApiError(503, code, detail)
    error.headers["Retry-After"] = "5"
    return error


class MLClient:
    def __init__(self, *, timeout_secs: float = 1.0, stale_secs: float = 3600.0, app_name: str = APP_NAME) -> None:
        self.timeout_secs = timeout_secs
        self.stale_secs = stale_secs
        self.app_name = app_name
        self._handles: dict[str, Any] = {}
        self._batchers: dict[tuple[str, str], CallBatcher] = {}
        self._answers: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()

    async def _handle(self, deployment: str, deadline: float) -> Any:
        if deployment not in self._handles:
            from ray import serve

            self._handles[deployment] = await asyncio.wait_for(
                asyncio.to_thread(serve.get_deployment_handle, deployment, app_name=self.app_name),
                max(0.0, deadline - time.monotonic()))
        return self._handles[deployment]

    async def call(self, deployment: str, method: str, payload: Any, *, cache_key: str) -> dict[str, Any]:
        """The deployment's answer (a dict without "error"), else the stale one, else a 503."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout_secs
        outcome = "failed"
        answer: dict[str, Any] | None = None
        try:
            got = await asyncio.wait_for(self._ask(deployment, method, payload, deadline),
                                         max(0.0, deadline - time.monotonic()))
            answer = got
            outcome = "ok" if "error" not in got else str(got["error"])
        except TimeoutError:
            outcome = "timeout"
        except Exception as exc:  # Serve not running, replica died, app deleted: all mean "unavailable"
            log.warning("ml call %s.%s failed: %r", deployment, method, exc)
            self._handles.pop(deployment, None)
        finally:
            ML_SECONDS.labels(deployment, outcome).observe(time.perf_counter() - started)
        key = (deployment, cache_key)
        if answer is not None and outcome == "ok":
            self._remember(key, answer)
            return answer
        if answer is not None and answer.get("error") not in (None, "no_model"):
            return answer  # the question's own problem (unknown listing...): the caller turns it into a 4xx
        cached = self._answers.get(key)
        if cached is not None and time.monotonic() - cached[0] <= self.stale_secs:
            return {**cached[1], "stale": True}
        if answer is not None:  # no model promoted yet
            raise ml_unavailable("model_not_ready", "No model has been trained yet; try again later.")
        raise ml_unavailable()

    async def _ask(self, deployment: str, method: str, payload: Any, deadline: float) -> dict[str, Any]:
        many = BATCHED.get((deployment, method))
        if many is None:
            handle = await self._handle(deployment, deadline)
            response = getattr(handle, method).remote(payload)
            try:
                answer: dict[str, Any] = await asyncio.shield(response)
            except asyncio.CancelledError:  # the deadline: the replica need not finish it
                response.cancel()
                raise
            return answer
        key = (deployment, method)
        if key not in self._batchers:
            self._batchers[key] = CallBatcher(self._sender(deployment, many))
        return await self._batchers[key].call(payload)

    def _sender(self, deployment: str, method: str) -> Send:
        async def send(payloads: list[Any]) -> list[dict[str, Any]]:
            # The batch has a deadline of its own, so a hung call never holds a slot for ever.
            deadline = time.monotonic() + self.timeout_secs
            handle = await self._handle(deployment, deadline)
            response = getattr(handle, method).remote(payloads)
            try:
                answers: list[dict[str, Any]] = await asyncio.wait_for(
                    asyncio.shield(response), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                response.cancel()
                raise
            return answers

        return send

    def _remember(self, key: tuple[str, str], answer: dict[str, Any]) -> None:
        self._answers[key] = (time.monotonic(), answer)
        self._answers.move_to_end(key)
        while len(self._answers) > _CACHE_SIZE:
            self._answers.popitem(last=False)

"""Sending a query to a search replica, from a gateway.

Any replica answers any query: calls go round-robin over the replicas alive now (the named
`search-*` actors, listed again every few seconds, so an added replica takes traffic without a
restart). A replica that fails or takes longer than the timeout is skipped for that call and
the next one is tried; when none answers the caller gets a 503 problem, never a hang."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import ray
from prometheus_client import Histogram
from ray.exceptions import RayError

from search.replica_actor import replica_names
from sharehub.config import RAY_NAMESPACE
from sharehub.errors import ApiError

log = logging.getLogger(__name__)

SEARCH_SECONDS = Histogram("sharehub_search_call_seconds", "Gateway to search replica calls", ["method", "outcome"],
                           buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
_REFRESH_SECS = 5.0


def unavailable() -> ApiError:
    error = ApiError(503, "search_unavailable", "Search is unavailable right now; try again shortly.")
    error.headers["Retry-After"] = "2"
    return error


class SearchClient:
    def __init__(self, *, timeout_secs: float = 2.0) -> None:
        self.timeout_secs = timeout_secs
        self._names: list[str] = []
        self._listed_at = 0.0
        self._actors: dict[str, Any] = {}
        self._turn = itertools.count()

    async def _replicas(self) -> list[str]:
        if time.monotonic() - self._listed_at > _REFRESH_SECS or not self._names:
            try:
                self._names = await asyncio.to_thread(replica_names)
            except Exception:  # the GCS briefly unreachable: keep the last list
                log.warning("listing search replicas failed", exc_info=True)
            self._listed_at = time.monotonic()
        return self._names

    def _actor(self, name: str) -> Any:
        if name not in self._actors:
            self._actors[name] = ray.get_actor(name, namespace=RAY_NAMESPACE)
        return self._actors[name]

    async def call(self, method: str, *args: Any) -> dict[str, Any]:
        names = await self._replicas()
        if not names:
            raise unavailable()
        first = next(self._turn)
        deadline = time.monotonic() + self.timeout_secs
        for attempt in range(min(2, len(names))):
            name = names[(first + attempt) % len(names)]
            left = deadline - time.monotonic()
            if left <= 0:
                break
            started = time.perf_counter()
            try:
                actor = self._actor(name)
            except ValueError:  # gone since it was listed
                self._listed_at = 0.0
                continue
            try:
                answer: dict[str, Any] = await asyncio.wait_for(getattr(actor, method).remote(*args), left)
            except (TimeoutError, RayError) as exc:  # a replica's own error arrives as a RayTaskError
                SEARCH_SECONDS.labels(method, "failed").observe(time.perf_counter() - started)
                log.warning("search replica %s failed %s: %r", name, method, exc)
                self._actors.pop(name, None)
                self._listed_at = 0.0
                continue
            SEARCH_SECONDS.labels(method, "ok").observe(time.perf_counter() - started)
            return answer
        raise unavailable()

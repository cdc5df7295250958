"""What a search replica reports to Prometheus, through Ray's metrics agent (names get a `ray_`
prefix there, as the shard actors' do). The lag histogram is the freshness promise made
measurable: from the moment an event's transaction wrote it to the moment a search sees it."""

from __future__ import annotations

from typing import Protocol

# Freshness: the target is 1 s at p99; the buckets resolve well below and a little beyond it.
_LAG_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0]


class SearchMetrics(Protocol):
    def applied(self, events: int, lags: list[float]) -> None: ...

    def documents(self, count: int) -> None: ...


class NoMetrics:
    def applied(self, events: int, lags: list[float]) -> None:
        pass

    def documents(self, count: int) -> None:
        pass


class RaySearchMetrics:
    """Metrics of one replica (tag `replica` = its name)."""

    def __init__(self, replica: str) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self._tags = {"replica": replica}
        self._events = Counter("sharehub_search_events_applied", "Listing events applied to the index.",
                               tag_keys=("replica",))
        self._lag = Histogram("sharehub_search_index_lag_seconds",
                              "From an event's commit to the index answering with it.",
                              boundaries=_LAG_BUCKETS, tag_keys=("replica",))
        self._documents = Gauge("sharehub_search_documents", "Listings in the replica's index.",
                                tag_keys=("replica",))

    def applied(self, events: int, lags: list[float]) -> None:
        self._events.inc(events, tags=self._tags)
        for lag in lags:
            self._lag.observe(lag, tags=self._tags)

    def documents(self, count: int) -> None:
        self._documents.set(count, tags=self._tags)

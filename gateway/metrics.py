"""Prometheus metrics of the gateway process (served at /metrics).

Route labels are the route *template* (`/api/v1/users/{id}`), never the raw path, so label
cardinality stays bounded whatever clients send."""

from __future__ import annotations

import asyncpg
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests handled", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being handled")

# asyncpg pools cannot be weakly referenced; apps unregister theirs on cleanup.
_POOLS: list[asyncpg.Pool] = []


class _PoolCollector(Collector):
    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily("db_pool_connections", "Postgres pool connections", labels=["state"])
        in_use = idle = maximum = 0
        for pool in list(_POOLS):
            size, free = pool.get_size(), pool.get_idle_size()
            in_use += size - free
            idle += free
            maximum += pool.get_max_size()
        family.add_metric(["in_use"], in_use)
        family.add_metric(["idle"], idle)
        family.add_metric(["max"], maximum)
        yield family


REGISTRY.register(_PoolCollector())


def watch_pool(pool: asyncpg.Pool) -> None:
    _POOLS.append(pool)


def unwatch_pool(pool: asyncpg.Pool) -> None:
    if pool in _POOLS:
        _POOLS.remove(pool)

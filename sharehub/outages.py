"""Telling an outage from a bug: which dependency an exception says is down.

A request that fails because Postgres, Redis, NATS or Ray is unreachable is answered 503 with the
dependency's stable code (`database_unavailable`, `redis_unavailable`, `nats_unavailable`,
`ray_unavailable`) and `Retry-After` - at once, never after a pool timeout, and never as a 500,
which would tell the client (and the on-call engineer) that the request itself was at fault.
Everything else stays a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import nats.errors
import redis.exceptions
from prometheus_client import Counter

from sharehub.errors import ApiError, unavailable
from storage.db import server_gone

Dependency = Literal["database", "redis", "nats", "ray"]

_DETAIL: dict[Dependency, str] = {
    "database": "The database is unavailable; retry shortly.",
    "redis": "The rate-limit and session store is unavailable; retry shortly.",
    "nats": "The event bus is unavailable; retry shortly.",
    "ray": "The entity service is unavailable; retry shortly.",
}

_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_NATS_ERRORS = (
    nats.errors.ConnectionClosedError, nats.errors.NoServersError, nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError, nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError, nats.errors.NoRespondersError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it (a wrapper may hide the outage below it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_ray_outage(exc: BaseException) -> bool:
    module = type(exc).__module__
    if not module.startswith("ray."):
        return False
    from ray import exceptions as ray_errors

    return isinstance(exc, ray_errors.RaySystemError | ray_errors.ActorUnavailableError | ray_errors.RayActorError
                      | ray_errors.GetTimeoutError | ray_errors.ObjectLostError)


def outage_of(exc: BaseException) -> Dependency | None:
    """The dependency this exception says is unreachable, or None (then it is a bug or bad input)."""
    for error in _chain(exc):
        if server_gone(error):
            return "database"
        if isinstance(error, _REDIS_ERRORS):
            return "redis"
        if isinstance(error, _NATS_ERRORS):
            return "nats"
        if _is_ray_outage(error):
            return "ray"
    return None


# Requests answered 503 because a dependency was down: the dashboard's outage panel.
UNAVAILABLE = Counter("sharehub_dependency_unavailable_total", "Requests answered 503 for a dependency that is down",
                      ["dependency"])


def outage_error(dependency: Dependency) -> ApiError:
    UNAVAILABLE.labels(dependency).inc()
    return unavailable(_DETAIL[dependency], code=f"{dependency}_unavailable")

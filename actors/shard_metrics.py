"""What a shard reports to Prometheus, through Ray's metrics agent.

Ray exports metrics recorded in actors on each node's metrics port, prefixed `ray_` (the Helm
chart's ServiceMonitor and deploy/prometheus scrape it; the Ray dashboard's Grafana panels read
it). `ShardHost` only knows the `ShardMetrics` protocol, so it runs without Ray in tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from actors.commands import Command, Result

# Commit latency and batch size buckets for a 1 ms micro-batching window and ~1-20 ms commits.
_SECONDS_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
_BATCH_BUCKETS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]


class ShardMetrics(Protocol):
    def batch_done(self, commands: Sequence[Command], results: Sequence[Result], seconds: float) -> None: ...

    def group_fallback(self) -> None: ...

    def live_entities(self, count: int) -> None: ...

    def timers_fired(self, count: int) -> None: ...

    def timer_failed(self, kind: str, code: str) -> None: ...

    def dead_timers(self, count: int) -> None: ...


class NoMetrics:
    def batch_done(self, commands: Sequence[Command], results: Sequence[Result], seconds: float) -> None:
        pass

    def group_fallback(self) -> None:
        pass

    def live_entities(self, count: int) -> None:
        pass

    def timers_fired(self, count: int) -> None:
        pass

    def timer_failed(self, kind: str, code: str) -> None:
        pass

    def dead_timers(self, count: int) -> None:
        pass


def _outcome(result: Result) -> str:
    if result.ok:
        return "ok"
    return "retry" if result.retryable else ("error" if result.status >= 500 else "rejected")


class RayShardMetrics:
    """Metrics of one shard actor (tag `shard` = its actor name; dead timers also by `fleet`, so a
    fleet's dead letter is one sum whatever the actors are called)."""

    def __init__(self, shard: str, fleet: str = "") -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        tags = {"shard": shard}
        self._commands = Counter("sharehub_shard_commands", "Entity commands handled, by kind and outcome.",
                                 tag_keys=("shard", "kind", "outcome"))
        self._batch_size = Histogram("sharehub_shard_batch_size", "Commands per batch a shard received.",
                                     boundaries=_BATCH_BUCKETS, tag_keys=("shard",))
        self._batch_seconds = Histogram("sharehub_shard_batch_seconds",
                                        "Time to decide and commit one batch, in seconds.",
                                        boundaries=_SECONDS_BUCKETS, tag_keys=("shard",))
        self._fallbacks = Counter("sharehub_shard_group_fallbacks",
                                  "Group commits that fell back to one command per transaction.", tag_keys=("shard",))
        self._live = Gauge("sharehub_shard_live_entities", "Entities in memory.", tag_keys=("shard",))
        self._timers = Counter("sharehub_shard_timers_fired", "Durable timers fired.", tag_keys=("shard",))
        self._timer_failures = Counter(
            "sharehub_shard_timer_failures",
            "Timer firings that failed and were put back (with backoff, or dead), by kind and error code.",
            tag_keys=("shard", "kind", "code"))
        self._dead_timers = Gauge("sharehub_shard_dead_timers",
                                  "Dead timers (failed every attempt; wait for an admin) of this shard's entities.",
                                  tag_keys=("shard", "fleet"))
        for metric in (self._commands, self._batch_size, self._batch_seconds, self._fallbacks, self._live,
                       self._timers, self._timer_failures):
            metric.set_default_tags(tags)
        self._dead_timers.set_default_tags({**tags, "fleet": fleet})

    def batch_done(self, commands: Sequence[Command], results: Sequence[Result], seconds: float) -> None:
        self._batch_size.observe(len(commands))
        self._batch_seconds.observe(seconds)
        counts: dict[tuple[str, str], int] = {}
        for command, result in zip(commands, results, strict=True):
            key = (command.kind, _outcome(result))
            counts[key] = counts.get(key, 0) + 1
        for (kind, outcome), count in counts.items():
            self._commands.inc(count, {"kind": kind, "outcome": outcome})

    def group_fallback(self) -> None:
        self._fallbacks.inc()

    def live_entities(self, count: int) -> None:
        self._live.set(count)

    def timers_fired(self, count: int) -> None:
        if count:
            self._timers.inc(count)

    def timer_failed(self, kind: str, code: str) -> None:
        self._timer_failures.inc(1, {"kind": kind, "code": code})

    def dead_timers(self, count: int) -> None:
        self._dead_timers.set(count)

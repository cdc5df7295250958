"""Shared helpers for benchmarks: a throwaway embedded stack, timing, and the result table."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sharehub.config import REPO_ROOT
from sharehub.devstack import DevStack, ServiceUrls


@contextmanager
def throwaway_stack(*, with_ray: bool = False, durable: bool = False) -> Iterator[ServiceUrls]:
    """Embedded services in a temporary directory. `durable=False` turns off fsync (faster, fine
    for most benchmarks); a benchmark of acknowledged commits passes True to pay what production pays."""
    with tempfile.TemporaryDirectory(prefix="shr-bench-") as tmp:
        stack = DevStack(Path(tmp), durable=durable, with_ray=with_ray, ray_dashboard=False)
        try:
            yield stack.start()
        finally:
            stack.stop()


@dataclass(frozen=True)
class RunResult:
    ops_per_sec: float
    p50_ms: float
    p99_ms: float


async def measure(op: Callable[[int], Awaitable[None]], *, requests: int, concurrency: int) -> RunResult:
    """Run `requests` calls of `op(i)` with `concurrency` in flight; latency per call."""
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            await op(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return RunResult(
        ops_per_sec=requests / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


def median_result(results: list[RunResult]) -> RunResult:
    return RunResult(
        ops_per_sec=statistics.median(r.ops_per_sec for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
    )


def print_table(title: str, rows: dict[str, RunResult], baseline: str) -> None:
    base = rows[baseline]
    print(f"\n{title}")
    print(f"{'path':<44} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs baseline':>12}")
    for name, result in rows.items():
        ratio = result.ops_per_sec / base.ops_per_sec
        print(f"{name:<44} {result.ops_per_sec:>10.0f} {result.p50_ms:>8.3f} {result.p99_ms:>8.3f} {ratio:>11.2f}x")


def revision() -> str:
    """The commit a benchmark ran on (printed with its results)."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    done = subprocess.run([git, "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True,  # noqa: S603
                          text=True, check=False)
    return done.stdout.strip() or "unknown"

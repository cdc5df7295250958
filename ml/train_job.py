"""`sharehub train` as a Ray job: the training runs in a Ray task on the cluster (beside the data
it reads, with the CPUs it asks for), and its progress comes back through a Ray queue to the
command's console, drawn as bars."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml.reporting import ConsoleReporter, QueueReporter
from ml.training import KINDS

# One CPU: LightGBM uses two threads, and the rest of the cluster keeps serving.
TRAINING_CPUS = 1


def _train(database_url: str, model_dir: str, kinds: list[str], queue: Any) -> list[dict[str, Any]]:
    from ml.artifacts import ModelStore
    from ml.training import train_models
    from storage.db import create_pool

    async def main() -> list[dict[str, Any]]:
        pool = await create_pool(database_url, min_size=1, max_size=2)
        try:
            reports = await train_models(pool, ModelStore(Path(model_dir)), QueueReporter(queue), kinds=kinds)
        finally:
            await pool.close()
        return [report.as_dict() for report in reports]

    return asyncio.run(main())


def submit_training(database_url: str, model_dir: Path, *, kinds: Sequence[str] = KINDS,
                    reporter: ConsoleReporter | None = None, num_cpus: float = TRAINING_CPUS) -> list[dict[str, Any]]:
    """Run the training task on the connected cluster and wait for it, drawing its progress."""
    import ray
    from ray.util.queue import Empty, Queue

    reporter = reporter or ConsoleReporter()
    queue = Queue()
    task = ray.remote(num_cpus=num_cpus, max_retries=0)(_train)
    ref = task.remote(database_url, str(model_dir), list(kinds), queue)

    def drain() -> None:
        while True:
            try:
                reporter.replay(queue.get_nowait())
            except Empty:
                return

    try:
        while not ray.wait([ref], timeout=0.2)[0]:
            drain()
        drain()
        result: list[dict[str, Any]] = ray.get(ref)
        return result
    finally:
        reporter.finish()
        queue.shutdown()

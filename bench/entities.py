"""Entity commands through the shard actors: micro-batched vs one Ray call per command.

Every command is a real listing update decided by its entity actor and committed to Postgres
(state + outbox event + command id) before it is acknowledged. The same commands run through the
router twice per round - batched (1 ms window, up to 100 per call) and unbatched (a Ray call per
command) - interleaved over several rounds; the table shows medians and the ratio.

    .venv/bin/python bench/entities.py [--listings 200] [--commands 3000] [--concurrency 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.commands import Command
from actors.kinds import ENTITY_KINDS
from actors.router import ShardRouter
from actors.sharding import ShardMap
from bench.common import RunResult, measure, median_result, print_table, throwaway_stack
from sharehub.config import load_settings
from sharehub.progress import Progress
from storage.db import create_pool
from storage.migrate import migrate

LISTING = {
    "title": "Перфоратор Bosch GBH 2-26", "description": "Мощный перфоратор в кейсе, с набором буров.",
    "category_id": "power-tools", "city": "Москва", "lat": 55.75, "lon": 37.61, "rental_unit": "day",
    "price_per_unit": 70000, "cancellation_policy": "moderate",
}


async def run(listings: int, commands: int, concurrency: int, rounds: int) -> None:
    with throwaway_stack(with_ray=True) as urls:
        await migrate(urls.database_url, load_settings().migrations_dir)
        pool = await create_pool(urls.database_url)
        owner = await pool.fetchval(
            "INSERT INTO users (email, password_hash, display_name) VALUES ('bench@example.ru', 'x', 'Bench') "
            "RETURNING id")
        shard_map = ShardMap(2, fleet=f"bench-{uuid.uuid4().hex[:6]}")
        batched = ShardRouter(shard_map, database_url=urls.database_url, kind_paths=ENTITY_KINDS)
        unbatched = ShardRouter(shard_map, database_url=urls.database_url, kind_paths=ENTITY_KINDS, max_batch=1)
        ids = [str(uuid.uuid4()) for _ in range(listings)]
        with Progress("listings", listings) as progress:
            for listing_id in ids:
                result = await batched.execute(Command(uuid.uuid4(), "listing", listing_id, "create", LISTING,
                                                       actor_id=str(owner)))
                assert result.ok, result
                progress.advance()

        def update(router: ShardRouter) -> object:
            async def op(i: int) -> None:
                command = Command(uuid.uuid4(), "listing", ids[i % listings], "update",
                                  {"price_per_unit": 70000 + i}, actor_id=str(owner))
                result = await router.execute(command)
                assert result.ok, result
            return op

        paths = {"micro-batched (1 ms / 100 per Ray call)": batched,
                 "baseline: one Ray call per command": unbatched}
        results: dict[str, list[RunResult]] = {name: [] for name in paths}
        for round_no in range(rounds):
            for name, router in paths.items():
                results[name].append(await measure(update(router), requests=commands,  # type: ignore[arg-type]
                                                   concurrency=concurrency))
            print(f"  round {round_no + 1}/{rounds} done", file=sys.stderr)
        await pool.close()
    print_table(
        f"Committed listing updates through 2 shard actors ({commands} commands x {rounds} rounds, "
        f"{concurrency} in flight, {listings} listings, medians)",
        {name: median_result(r) for name, r in results.items()},
        baseline="baseline: one Ray call per command",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listings", type=int, default=200)
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    uvloop.run(run(args.listings, args.commands, args.concurrency, args.rounds))


if __name__ == "__main__":
    main()

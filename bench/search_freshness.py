"""How soon a published listing can be found: commit of the approval -> a search that finds it.

The whole pipeline runs as in production: the approval is a command to the listing's shard actor
(committed to Postgres with its outbox row), the outbox relay publishes it to JetStream, a search
replica (a Ray actor) applies it and commits its index, and a query through the replica's actor
handle finds the listing. The bench stamps the moment the approval is acknowledged, then queries
the replica continuously until the listing is there.

Baseline in the same run: the pipeline's floor - when the same event reaches a plain NATS
subscriber (commit -> relay -> NATS), which no index can beat. The difference is what indexing
adds. Two workloads: publishes one at a time (a quiet market), and bursts of concurrent publishes
while bookings stream into the same replica (a busy one).

    .venv/bin/python bench/search_freshness.py                 # 20 000 listings, 200 + 5 x 40
    .venv/bin/python bench/search_freshness.py --listings 100000"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` from the repo

from actors.relay import ensure_stream, run_relay
from bench.common import throwaway_stack
from gateway.entities import execute_as
from search.replica_actor import replica_actor
from search.request import SearchRequest
from sharehub.config import load_settings
from sharehub.platform import Platform, open_platform
from sharehub.progress import Progress
from sharehub.security.keys import generate_key
from sharehub.seed.generate import seed_database
from storage.migrate import migrate

_MODERATOR = frozenset({"moderator"})
_POLL_TIMEOUT_SECS = 30.0


def _word(rng_id: uuid.UUID) -> str:
    return "свежесть" + "".join("абвгдежзиклмнопрстуфхцчшщ"[int(c, 16)] for c in rng_id.hex[:10])


async def _draft(platform: Platform, owner: str, word: str) -> uuid.UUID:
    listing_id = uuid.uuid4()
    fields: dict[str, Any] = {
        "title": f"Палатка {word}", "description": "Трёхместная палатка для похода, лёгкая.",
        "category_id": "tents", "city": "Москва", "lat": 55.75, "lon": 37.62, "rental_unit": "day",
        "price_per_unit": 90_000, "cancellation_policy": "flexible",
    }
    roles = frozenset({"user"})
    await execute_as(platform, "listing", listing_id, "create", fields, actor_id=owner, actor_roles=roles)
    await execute_as(platform, "listing", listing_id, "submit", {}, actor_id=owner, actor_roles=roles)
    return listing_id


async def _publish_and_time(platform: Platform, replica: Any, owner: str, moderator: str,
                            arrivals: dict[str, float]) -> tuple[float, float]:
    """(seconds to the event on NATS, seconds until a search finds it), from the approval's ack."""
    word = _word(uuid.uuid4())
    listing_id = await _draft(platform, owner, word)
    await execute_as(platform, "listing", listing_id, "approve", {}, actor_id=moderator, actor_roles=_MODERATOR)
    acked = time.perf_counter()
    request = SearchRequest(q=word, facets=False, per_page=1)
    while (await replica.search.remote(request))["total"] == 0:
        if time.perf_counter() - acked > _POLL_TIMEOUT_SECS:
            raise TimeoutError(f"listing {listing_id} not searchable after {_POLL_TIMEOUT_SECS} s")
    found = time.perf_counter()
    for _ in range(1000):  # the NATS subscriber may trail the replica by a moment
        if str(listing_id) in arrivals:
            break
        await asyncio.sleep(0.001)
    return arrivals.get(str(listing_id), found) - acked, found - acked


async def _bookings(platform: Platform, renters: list[str], listings: list[str], stop: asyncio.Event) -> int:
    """Background load on the same stream: booking requests on seeded listings, ~50/s."""
    done = 0
    day = 400
    while not stop.is_set():
        listing = listings[done % len(listings)]
        renter = renters[done % len(renters)]
        start = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400 * (5 + day % 300)))
        end = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400 * (6 + day % 300)))
        day += 3
        with contextlib.suppress(Exception):  # a refused booking (dates taken) is load all the same
            await execute_as(platform, "listing", listing, "request_booking",
                             {"rental_id": str(uuid.uuid4()), "start": start, "end": end, "quantity": 1},
                             actor_id=renter, actor_roles=frozenset({"user"}))
        done += 1
        await asyncio.sleep(0.02)
    return done


def _quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def run(opts: argparse.Namespace) -> None:
    with throwaway_stack(with_ray=True) as urls, tempfile.TemporaryDirectory(prefix="shr-fresh-") as tmp:
        keys = Path(tmp) / "keys"
        generate_key(keys)
        settings = replace(load_settings(), database_url=urls.database_url, nats_url=urls.nats_url,
                           redis_url=urls.redis_url, ray_address=urls.ray_address, jwt_keys_dir=keys,
                           data_dir=Path(tmp) / "data")
        assert settings.database_url and settings.nats_url
        await migrate(settings.database_url, settings.migrations_dir)
        async with open_platform(settings) as platform:
            started = time.perf_counter()
            await seed_database(platform.db, users=max(100, opts.listings // 20), listings=opts.listings, seed=7)
            print(f"seeded {opts.listings} listings in {time.perf_counter() - started:.1f} s")
            users = [str(r["id"]) for r in await platform.db.fetch("SELECT id FROM users LIMIT 200")]
            seeded = [str(r["id"]) for r in await platform.db.fetch(
                "SELECT id FROM listings WHERE status = 'published' AND rental_unit = 'day' LIMIT 2000")]
            owner, moderator = users[0], users[1]
            assert platform.nats is not None
            js = platform.nats.jetstream()
            await ensure_stream(js)
            stop = asyncio.Event()
            relay = asyncio.create_task(run_relay(platform.db, js, stop))

            arrivals: dict[str, float] = {}

            async def on_published(message: Any) -> None:
                arrivals[orjson.loads(message.data)["entity_id"]] = time.perf_counter()

            subscription = await platform.nats.subscribe("listing.*.published", cb=on_published)
            replica = replica_actor("fresh", data_dir=Path(tmp) / "search", database_url=settings.database_url,
                                    nats_url=settings.nats_url)
            started = time.perf_counter()
            status = await replica.start.remote()
            print(f"replica built its index of {status['documents']} listings in "
                  f"{time.perf_counter() - started:.1f} s")

            # Warm up the shard actors, the relay and the replica.
            for _ in range(5):
                await _publish_and_time(platform, replica, owner, moderator, arrivals)

            quiet: list[tuple[float, float]] = []
            with Progress("quiet", opts.publishes) as progress:
                for _ in range(opts.publishes):
                    quiet.append(await _publish_and_time(platform, replica, owner, moderator, arrivals))
                    progress.advance()
                    await asyncio.sleep(0.02)

            busy: list[tuple[float, float]] = []
            load_stop = asyncio.Event()
            load = asyncio.create_task(_bookings(platform, users[2:], seeded, load_stop))
            with Progress("busy", opts.bursts * opts.burst) as progress:
                for _ in range(opts.bursts):
                    busy += await asyncio.gather(*(
                        _publish_and_time(platform, replica, owner, moderator, arrivals) for _ in range(opts.burst)))
                    progress.advance(opts.burst)
            load_stop.set()
            bookings = await load

            await subscription.unsubscribe()
            stop.set()
            await relay
            await replica.stop.remote()

    print()
    print(f"publish -> searchable, {opts.listings} listings in the index (ms; target p99 <= 1000)")
    print(f"{'workload':<44} {'on NATS p50':>12} {'p99':>8} {'searchable p50':>15} {'p99':>8} {'index adds p50':>15}")
    for name, rows in ((f"quiet: {len(quiet)} publishes one at a time", quiet),
                       (f"busy: {len(busy)} in bursts of {opts.burst}, +{bookings} bookings", busy)):
        nats_p50, nats_p99 = _quantiles([r[0] for r in rows])
        found_p50, found_p99 = _quantiles([r[1] for r in rows])
        print(f"{name:<44} {nats_p50:>12.1f} {nats_p99:>8.1f} {found_p50:>15.1f} {found_p99:>8.1f} "
              f"{found_p50 - nats_p50:>15.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listings", type=int, default=20_000, help="seeded listings (most get published)")
    parser.add_argument("--publishes", type=int, default=200, help="publishes one at a time")
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--burst", type=int, default=40, help="concurrent publishes per burst")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

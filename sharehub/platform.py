"""The handles a running process shares: settings, the Postgres pool, Redis, NATS and the token
service. Built once at start (gateway, CLI) and passed to actions explicitly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from actors.kinds import ENTITY_KINDS
from actors.router import ShardRouter
from actors.sharding import ShardMap
from ml.client import MLClient
from search.client import SearchClient
from sharehub.config import Settings
from sharehub.security.keys import KeyRing
from sharehub.security.tokens import TokenService
from storage.db import create_pool

_NATS_DRAIN_SECS = 3.0


@dataclass
class Platform:
    settings: Settings
    db: asyncpg.Pool
    redis: Redis
    tokens: TokenService
    nats: NatsClient | None = None
    # Routes commands to the shard actors; None where no Ray cluster is connected (CLI tools).
    entities: ShardRouter | None = None
    # Sends queries to the search replicas; None without a Ray cluster.
    search: SearchClient | None = None
    # Asks ml-core (Ray Serve) for price suggestions and similar listings; None without a Ray cluster.
    ml: MLClient | None = None


def build_token_service(settings: Settings) -> TokenService:
    keys = KeyRing(
        settings.jwt_keys_dir,
        publish_delay_secs=settings.key_publish_delay_secs,
        rescan_secs=settings.key_rescan_interval_secs,
    )
    return TokenService(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl_secs=settings.access_token_ttl_secs,
        refresh_ttl_secs=settings.refresh_token_ttl_secs,
    )


def _entity_router(settings: Settings) -> ShardRouter | None:
    import ray

    if not ray.is_initialized():
        return None
    assert settings.database_url
    return ShardRouter(ShardMap(settings.shard_count, fleet=settings.fleet), database_url=settings.database_url,
                       kind_paths=ENTITY_KINDS)


async def _close_nats(client: NatsClient) -> None:
    # Drain delivers what is in flight, but never waits on a NATS that is gone.
    try:
        await asyncio.wait_for(client.drain(), _NATS_DRAIN_SECS)
    except (TimeoutError, nats.errors.Error):
        await client.close()


@asynccontextmanager
async def open_platform(settings: Settings) -> AsyncIterator[Platform]:
    """Connect to every service the settings name; close them all on exit."""
    if not (settings.database_url and settings.redis_url and settings.nats_url):
        raise RuntimeError("DATABASE_URL, REDIS_URL and NATS_URL must be set (or use `sharehub run`)")
    db = await create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    # A blocking pool: when every connection is busy a request waits (up to 2 s) for one, where
    # the default pool fails it at once ("Too many connections", a 500 under a burst). Redis
    # answers in well under a millisecond, so a second without an answer means it is gone: the
    # request gets 503 redis_unavailable rather than a long wait. One immediate retry on a fresh
    # connection: after a Redis restart, the first use of each stale pooled connection fails.
    redis = Redis(connection_pool=BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=100, timeout=2, socket_timeout=1, socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 1), retry_on_error=[redis_errors.ConnectionError]))
    nats_client: NatsClient | None = None
    try:
        nats_client = await nats.connect(
            settings.nats_url, name="sharehub", max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        entities = _entity_router(settings)
        yield Platform(settings=settings, db=db, redis=redis, tokens=build_token_service(settings), nats=nats_client,
                       entities=entities,
                       search=SearchClient(timeout_secs=settings.search_timeout_secs) if entities else None,
                       ml=MLClient(timeout_secs=settings.ml_timeout_secs) if entities else None)
    finally:
        if nats_client is not None:
            await _close_nats(nats_client)
        await redis.aclose()
        await db.close()

"""The asyncpg pool and named transactions.

Every transaction has a name (`async with transaction(pool, "register_user")`) so slow or failing
ones show up by name in logs and in the `db_transaction_seconds` metric."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg
import orjson
from prometheus_client import Histogram

DB_TRANSACTION_SECONDS = Histogram(
    "db_transaction_seconds", "Duration of named database transactions", ["name"]
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, encoded by orjson (10x faster than json). Binary
    # format (a version byte, then the JSON text) so COPY can load jsonb columns too.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Before a connection goes back to the pool. asyncpg's default reset costs a round trip on
    every release (unlisten, reset all, advisory unlock all, close cursors); our pooled
    connections never hold session state (no LISTEN, no SET, only transaction-scoped advisory
    locks), so only a transaction a cancelled task left open needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_reset_connection,
        command_timeout=30,
        server_settings={"application_name": "sharehub"},
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool, name: str) -> AsyncIterator[asyncpg.Connection]:
    started = time.perf_counter()
    try:
        async with pool.acquire() as conn, conn.transaction():
            # The pool hands out a proxy that behaves as a Connection.
            yield cast(asyncpg.Connection, conn)
    finally:
        DB_TRANSACTION_SECONDS.labels(name).observe(time.perf_counter() - started)


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, typed as the Connection it behaves as."""
    async with pool.acquire() as conn:
        yield cast(asyncpg.Connection, conn)

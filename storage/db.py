"""The asyncpg pool and named transactions.

Every transaction has a name (`async with transaction(pool, "register_user")`) so slow or failing
ones show up by name in logs and in the `db_transaction_seconds` metric."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

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


# A new connection that takes longer than this is treated as "the database is down" (asyncpg's
# default is 60 s, which would hold every request of an outage that long).
CONNECT_TIMEOUT_SECS = 3.0
# After a failed connection attempt, new ones fail at once for this long: during an outage each
# request is answered 503 immediately instead of each paying a connect attempt (a blackholed host
# costs the whole timeout); the first attempt after it tells whether the server is back.
CONNECT_COOLDOWN_SECS = 0.5


class DatabaseUnavailable(Exception):
    """A new connection to Postgres could not be made (refused, timed out, server starting up)."""


# What asyncpg raises when the server is gone: a server shutting down or starting (57P01-57P03), a
# connection refused, reset or closed under a query.
_SERVER_GONE = (
    DatabaseUnavailable, asyncpg.PostgresConnectionError, asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
)


def server_gone(exc: BaseException) -> bool:
    """Does this exception say Postgres is unreachable (rather than that a query is wrong)? Not
    every InterfaceError does: most are bugs (using a released connection); "connection is
    closed" is the server having left."""
    if isinstance(exc, _SERVER_GONE):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


class _ConnectGate:
    """The pool's `connect`: a short timeout and a cooldown after a failure (a circuit breaker
    with one setting). Failures surface as `DatabaseUnavailable`, which the gateway answers 503."""

    def __init__(self) -> None:
        self.failed_at = float("-inf")

    async def __call__(self, dsn: str, **kwargs: Any) -> asyncpg.Connection:
        if time.monotonic() - self.failed_at < CONNECT_COOLDOWN_SECS:
            raise DatabaseUnavailable("the last connection attempt failed moments ago")
        try:
            conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECS, **kwargs)
        except (OSError, TimeoutError, *_SERVER_GONE) as exc:
            self.failed_at = time.monotonic()
            raise DatabaseUnavailable(f"cannot connect: {type(exc).__name__}") from exc
        self.failed_at = float("-inf")
        return conn


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # The stubs spell out asyncpg.connect's whole signature; the gate passes every argument on.
        connect=cast(Any, _ConnectGate()),
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


async def delete_in_batches(conn: asyncpg.Connection | asyncpg.Pool, statement: str, *args: object,
                            batch: int = 10_000, max_batches: int = 100) -> int:
    """Run a purge - a DELETE whose last parameter is the LIMIT of the rows it picks - until a run
    deletes less than a batch: short statements, so no transaction holds many row locks or runs
    long on a busy table. Returns how many rows went."""
    purged = 0
    for _ in range(max_batches):
        deleted = int((await conn.execute(statement, *args, batch)).split()[-1])
        purged += deleted
        if deleted < batch:
            break
    return purged

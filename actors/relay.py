"""The outbox relay: committed events -> NATS JetStream.

Events are written to `outbox` in the same transaction as the state they describe. The relay
publishes them in commit order with the event id as `Nats-Msg-Id` (JetStream drops a duplicate
inside its dedup window), then marks them published. If NATS is down the rows simply stay
unpublished and the next round catches up; if we crash between publish and mark, the republish
is deduplicated. Only one relay publishes at a time (an advisory lock), so order is kept; every
gateway runs one and the others stand by."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import orjson
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NoStreamResponseError, NotFoundError
from prometheus_client import Counter

from storage import runtime as store
from storage.db import transaction

log = logging.getLogger(__name__)

UNROUTABLE = Counter("sharehub_outbox_unroutable_total", "Outbox events no JetStream stream takes (set aside)")

STREAM = "SHAREHUB_EVENTS"
ENTITY_SUBJECTS = ("listing.>", "rental.>", "chat.>", "user.>")
_RELAY_LOCK_KEY = 0x5348_524C  # "SHRL"
_BATCH = 500
_IDLE_POLL_SECS = 0.5
_DEDUP_WINDOW_SECS = 120.0


async def ensure_stream(js: JetStreamContext, subjects: tuple[str, ...] = ENTITY_SUBJECTS) -> None:
    """Create the event stream, or add subjects it does not carry yet."""
    try:
        info = await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(StreamConfig(
            name=STREAM, subjects=list(subjects), storage=StorageType.FILE,
            duplicate_window=_DEDUP_WINDOW_SECS, max_age=7 * 24 * 3600.0,
        ))
        return
    missing = [s for s in subjects if s not in (info.config.subjects or [])]
    if missing:
        info.config.subjects = [*(info.config.subjects or []), *missing]
        await js.update_stream(info.config)


async def publish_pending(pool: asyncpg.Pool, js: JetStreamContext) -> int:
    """Publish one batch of unpublished events; returns how many (0 if another relay is active).

    What JetStream acknowledged is marked published even when other events of the batch failed
    (they go again next round; consumers and live channels order by each channel's `seq`). An
    event that no stream takes - its subject is in no stream's subjects, a misconfiguration no
    retry mends - is logged, counted and set aside as unroutable rather than retried forever:
    retried, it would fail the oldest batch every round and hold back every event behind it."""
    async with transaction(pool, "relay_outbox") as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK_KEY):
            return 0
        rows = await store.claim_unpublished(conn, _BATCH)
        if not rows:
            return 0
        # Publish concurrently (each waits for its JetStream ack), in commit order per entity
        # because JetStream assigns sequence numbers in the order the publishes arrive.
        acks = [
            js.publish(row["subject"], orjson.dumps(row["payload"]), headers={"Nats-Msg-Id": str(row["id"])})
            for row in rows
        ]
        outcomes = await asyncio.gather(*acks, return_exceptions=True)
        answered = list(zip(rows, outcomes, strict=True))
        done = [row["id"] for row, outcome in answered if not isinstance(outcome, BaseException)]
        failed = [(row, outcome) for row, outcome in answered if isinstance(outcome, BaseException)]
        unroutable = [row for row, error in failed
                      if isinstance(error, NoStreamResponseError) and not await _stream_takes(js, row["subject"])]
        if unroutable:
            UNROUTABLE.inc(len(unroutable))
            log.error("no stream takes %d outbox event(s), set aside unpublished: %s", len(unroutable),
                      sorted({row["subject"].split(".")[0] for row in unroutable}))
            await store.mark_unroutable(conn, [row["id"] for row in unroutable])
        await store.mark_published(conn, done)
        if len(failed) > len(unroutable):
            # A transient failure (NATS away, a stream without a leader): what got through is kept.
            error = next(e for row, e in failed if row not in unroutable)
            raise RelayRoundFailed(f"{len(failed) - len(unroutable)} of {len(rows)} events not published") from error
        return len(done)


class RelayRoundFailed(Exception):
    """Some events of a batch were not acknowledged; they go again next round."""


async def _stream_takes(js: JetStreamContext, subject: str) -> bool:
    """Does some stream capture this subject? (Only a definite "none" is an unroutable event.)"""
    try:
        await js.find_stream_name_by_subject(subject)
    except NotFoundError:
        return False
    except Exception:  # cannot tell now (NATS away): treat as transient
        return True
    return True


async def run_relay(pool: asyncpg.Pool, js: JetStreamContext, stop: asyncio.Event) -> None:
    """Publish until `stop`. Every outbox write NOTIFYs at commit, which wakes the relay at once;
    the poll interval is only the backstop for a lost wake-up (a dropped listen connection)."""
    wake = asyncio.Event()
    async with _listening(pool, wake):
        while not stop.is_set():
            wake.clear()
            try:
                published = await publish_pending(pool, js)
            except Exception:
                log.warning("outbox relay round failed; retrying", exc_info=True)
                published = 0
                await asyncio.sleep(1.0)
            if published == 0:
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
                await asyncio.wait(waiters, timeout=_IDLE_POLL_SECS, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()


@contextlib.asynccontextmanager
async def _listening(pool: asyncpg.Pool, wake: asyncio.Event) -> AsyncIterator[None]:
    """LISTEN on one connection of the pool for as long as the relay runs (best effort: without
    it the relay polls)."""
    def notified(*_: object) -> None:
        wake.set()

    try:
        conn = await pool.acquire()
    except Exception:
        log.warning("relay cannot listen for outbox writes; polling", exc_info=True)
        yield
        return
    try:
        await conn.add_listener(store.OUTBOX_CHANNEL, notified)
        yield
    finally:
        with contextlib.suppress(Exception):
            await conn.remove_listener(store.OUTBOX_CHANNEL, notified)
        await pool.release(conn)

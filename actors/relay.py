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

import asyncpg
import orjson
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from storage import runtime as store
from storage.db import transaction

log = logging.getLogger(__name__)

STREAM = "SHAREHUB_EVENTS"
ENTITY_SUBJECTS = ("listing.>", "rental.>", "chat.>")
_RELAY_LOCK_KEY = 0x5348_524C  # "SHRL"
_BATCH = 500
_IDLE_SLEEP_SECS = 0.05
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
    """Publish one batch of unpublished events; returns how many (0 if another relay is active)."""
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
        await asyncio.gather(*acks)
        await store.mark_published(conn, [row["id"] for row in rows])
        return len(rows)


async def run_relay(pool: asyncpg.Pool, js: JetStreamContext, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            published = await publish_pending(pool, js)
        except Exception:
            log.warning("outbox relay round failed; retrying", exc_info=True)
            published = 0
            await asyncio.sleep(1.0)
        if published == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _IDLE_SLEEP_SECS)

"""A search replica: its own index, built from Postgres and kept fresh from the event stream.

Every replica follows `listing.>` on JetStream through a durable consumer of its own
(`search-<name>`), so replicas share nothing and a new one needs no coordination: it builds from a
snapshot and subscribes from the stream position taken just before the snapshot (an event the
snapshot already reflects is applied again harmlessly: documents are re-read from Postgres,
calendar events carry their channel seq). Events are applied in batches: one tantivy commit per
batch, then the batch is acked - a crash in between replays it, which changes nothing.

On restart a replica opens its index from disk and resumes the consumer where it last acked; if
either is missing (first start, a wiped volume, a recreated stream) it builds afresh. `rebuild`
builds a new index next to the live one while the live one keeps serving and following; the
listings changed meanwhile are re-read into the new one, then the two swap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from actors.relay import STREAM, ensure_stream
from search import source
from search.build import CALENDAR_LOOKBACK, build
from search.documents import is_searchable, listing_document, listing_key
from search.engine import SearchEngine
from search.index import ListingIndex
from search.metrics import NoMetrics, SearchMetrics
from search.request import SearchRequest, SearchResult
from search.store import IndexStore
from search.suggest import suggest
from storage.db import create_pool

log = logging.getLogger(__name__)

SUBJECTS = ("listing.>",)
_FETCH_BATCH = 256
_FETCH_WAIT_SECS = 1.0
_ACK_WAIT_SECS = 60.0
_PRUNE_EVERY_SECS = 3600.0


@dataclass
class Progress:
    phase: str = "idle"  # idle | building | catching_up | swapping | failed
    done: int = 0
    total: int = 0
    started_at: float = field(default_factory=time.time)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "done": self.done, "total": self.total, "started_at": self.started_at,
                "error": self.error}


def _lags(events: list[dict[str, Any]], visible_at: float) -> list[float]:
    lags = []
    for event in events:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            lags.append(max(0.0, visible_at - datetime.fromisoformat(event["occurred_at"]).timestamp()))
    return lags


class SearchReplica:
    def __init__(self, name: str, data_dir: Path, *, database_url: str, nats_url: str,
                 metrics: SearchMetrics | None = None) -> None:
        self.name = name
        self.metrics: SearchMetrics = metrics or NoMetrics()
        self.consumer_name = f"search-{name}"
        self.store = IndexStore(data_dir)
        self._database_url = database_url
        self._nats_url = nats_url
        self._pool: asyncpg.Pool | None = None
        self._nats: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self.engine: SearchEngine | None = None
        self._applying = asyncio.Lock()  # one batch of events, or the swap of a rebuild, at a time
        self._rebuilding = asyncio.Lock()
        self._touched: set[str] | None = None  # listings changed while a rebuild runs
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.progress = Progress()
        self.applied_events = 0
        self.last_applied_at: float | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self._pool = await create_pool(self._database_url, min_size=1, max_size=4)
        self._nats = await nats.connect(self._nats_url, name=f"search-{self.name}", max_reconnect_attempts=-1,
                                        reconnect_time_wait=0.5)
        self._js = self._nats.jetstream()
        await ensure_stream(self._js)
        stream_id = await self._stream_id()
        consumer_ok = await self._consumer_exists()
        path = self.store.current(stream_id)
        if path is not None and consumer_ok:
            log.info("search replica %s resumes from %s", self.name, path)
            built = await build(self._pool, None, documents=False)
            self.engine = SearchEngine(ListingIndex(path), built.book, built.categories)
        else:
            await self._build_fresh(stream_id)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow()), loop.create_task(self._prune_forever())]

    async def stop(self) -> None:
        """Let the batch in hand finish (its commit runs in a thread a cancel would not stop),
        then close the index."""
        self._stop.set()
        for task in self._tasks[1:]:  # the pruner
            task.cancel()
        if self._tasks:  # the follower ends after its batch in hand
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._tasks[0], _FETCH_WAIT_SECS + 30)
        async with self._applying:
            if self.engine is not None:
                await asyncio.to_thread(self.engine.index.close)
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()
        if self._pool is not None:
            await self._pool.close()

    async def _stream_id(self) -> str:
        """What identifies the stream an index follows: a recreated stream starts over at seq 1."""
        assert self._js is not None
        info = await self._js.stream_info(STREAM)
        return str(info.created) if getattr(info, "created", None) else STREAM

    async def _consumer_exists(self) -> bool:
        assert self._js is not None
        try:
            await self._js.consumer_info(STREAM, self.consumer_name)
        except NotFoundError:
            return False
        return True

    async def _build_fresh(self, stream_id: str) -> None:
        """Build from a snapshot and subscribe from just before it."""
        assert self._pool is not None and self._js is not None
        position = (await self._js.stream_info(STREAM)).state.last_seq
        path = self.store.new_path()
        self.progress = Progress("building")
        built = await build(self._pool, path, progress=self._report)
        assert built.index is not None
        await asyncio.to_thread(built.index.close)  # reopen with the everyday writer (the bulk one holds 256 MB)
        self.engine = SearchEngine(ListingIndex(path), built.book, built.categories)
        await self._subscribe_from(position + 1)
        self.store.switch(path, stream_id)
        self.progress = Progress("idle", done=built.documents, total=built.documents)

    async def _subscribe_from(self, stream_seq: int) -> None:
        assert self._js is not None
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(STREAM, self.consumer_name)
        await self._js.add_consumer(STREAM, ConsumerConfig(
            durable_name=self.consumer_name, filter_subjects=list(SUBJECTS), ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=stream_seq, ack_wait=_ACK_WAIT_SECS,
            max_ack_pending=10_000,
        ))

    def _report(self, done: int, total: int) -> None:
        self.progress.done, self.progress.total = done, total

    # ------------------------------------------------------------------ following the stream

    async def _follow(self) -> None:
        assert self._js is not None
        while not self._stop.is_set():
            try:
                subscription = await self._js.pull_subscribe_bind(self.consumer_name, stream=STREAM)
                while not self._stop.is_set():
                    try:
                        messages = await subscription.fetch(_FETCH_BATCH, timeout=_FETCH_WAIT_SECS)
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                    await self.apply([event for message in messages if (event := self._decode(message.data))])
                    for message in messages:
                        await message.ack()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("search replica %s lost its subscription; retrying", self.name, exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    def _decode(self, data: bytes) -> dict[str, Any] | None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            log.error("search replica %s skips an undecodable event", self.name)
            return None
        return event

    async def apply(self, events: list[dict[str, Any]]) -> None:
        """Apply a batch of listing events: calendars in stream order, then every listing the
        batch touched re-read from Postgres (one query) and re-indexed or removed, one commit."""
        assert self._pool is not None and self.engine is not None
        async with self._applying:
            engine = self.engine
            changed: set[str] = set()
            for event in events:
                listing_id = str(event.get("entity_id"))
                try:
                    key = listing_key(listing_id)
                except ValueError:
                    log.error("search replica %s skips an event about %r", self.name, listing_id)
                    continue
                if event.get("type") == "availability_changed":
                    try:
                        engine.book.apply(key, event.get("data") or {},
                                          at=(str(event.get("epoch", "")), int(event.get("seq", 0))))
                    except (KeyError, TypeError, ValueError):
                        # A malformed event must not stall the stream behind it; a rebuild
                        # restores the calendar from Postgres.
                        log.exception("search replica %s skips a malformed calendar event %s", self.name,
                                      event.get("event_id"))
                # Any event - a booking too, which moves the row's `updated_at` - means the
                # document is re-read: what the index holds is always the row as it is now.
                changed.add(listing_id)
            if changed:
                rows = {str(row["id"]): row for row in await source.listing_rows(self._pool, changed)}
                for listing_id in changed:
                    row = rows.get(listing_id)
                    if row is not None and is_searchable(row):
                        engine.index.put(listing_id, listing_document(row, engine.categories.paths))
                    else:
                        engine.index.delete([listing_id])
                    if row is None or row["status"] == "archived":
                        engine.book.forget(listing_key(listing_id))
                    else:
                        engine.book.set_quantity(listing_key(listing_id), row["quantity"])
                # tantivy releases the GIL while it commits: queries go on meanwhile.
                await asyncio.to_thread(engine.index.commit)
                if self._touched is not None:
                    self._touched.update(changed)
            self.applied_events += len(events)
            self.last_applied_at = time.time()
            self.metrics.applied(len(events), _lags(events, self.last_applied_at))
            self.metrics.documents(engine.index.num_docs)

    async def _prune_forever(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(_PRUNE_EVERY_SECS)
            if self.engine is not None:
                self.engine.book.prune(datetime.now(UTC) - CALENDAR_LOOKBACK - timedelta(days=1))

    # ------------------------------------------------------------------ rebuild

    async def rebuild(self) -> dict[str, Any]:
        """Build a new index from Postgres beside the live one, then swap (no downtime)."""
        assert self._pool is not None and self._js is not None
        if self._rebuilding.locked():
            raise RuntimeError("a rebuild is already running")
        async with self._rebuilding:
            self._touched = set()
            path = self.store.new_path()
            self.progress = Progress("building")
            try:
                built = await build(self._pool, path, progress=self._report)
                assert built.index is not None and self.engine is not None
                new_index = built.index
                async with self._applying:
                    self.progress.phase = "catching_up"
                    touched, self._touched = self._touched, None
                    rows = {str(r["id"]): r for r in await source.listing_rows(self._pool, touched or set())}
                    for listing_id in touched or set():
                        row = rows.get(listing_id)
                        if row is not None and is_searchable(row):
                            new_index.put(listing_id, listing_document(row, built.categories.paths))
                        else:
                            new_index.delete([listing_id])
                    await asyncio.to_thread(new_index.commit)
                    await asyncio.to_thread(new_index.close)
                    self.progress.phase = "swapping"
                    old = self.engine.index
                    self.engine.index = ListingIndex(path)
                    self.engine.categories = built.categories
                    self.store.switch(path, await self._stream_id())
                    old.close()
                    if old.path is not None:
                        shutil.rmtree(old.path, ignore_errors=True)
            except Exception as exc:
                self._touched = None
                shutil.rmtree(path, ignore_errors=True)
                self.progress = Progress("failed", error=str(exc))
                raise
            self.progress = Progress("idle", done=built.documents, total=built.documents)
            return {"documents": built.documents}

    # ------------------------------------------------------------------ queries

    @property
    def applying(self) -> bool:
        """A batch of events is being applied (its index commit may not be visible yet)."""
        return self._applying.locked()

    def _engine(self) -> SearchEngine:
        if self.engine is None:
            raise RuntimeError("the replica is still starting")
        return self.engine

    def search(self, request: SearchRequest) -> SearchResult:
        return self._engine().search(request)

    def suggest(self, prefix: str, limit: int) -> dict[str, Any]:
        engine = self._engine()
        return suggest(engine.index, engine.categories, prefix, limit)

    def status(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "name": self.name, "ready": engine is not None, "documents": engine.index.num_docs if engine else 0,
            "calendars": len(engine.book) if engine else 0, "applied_events": self.applied_events,
            "last_applied_at": self.last_applied_at, "progress": self.progress.as_dict(),
        }

"""Durable JetStream consumers of domain events, shared by every gateway process.

A consumer is a name, the subjects it wants and a handler of one event. All processes pull from
the same durable consumer, so each event goes to one of them - and the relay publishes
concurrently and failed events come back later, so one process can get an entity's seq n+1
before n, and two processes can hold n and n+1 at once. So a consumer applies each channel's
events (the entity an event is about; every payload carries its channel's gap-free `seq` and
`epoch`) in seq order, whatever process they reach:

- in one transaction the consumer's position in the channel is locked (storage/consumer_positions.py):
  two processes with events of one entity take turns here;
- seq at or below the position: a redelivery, acked;
- an earlier event of the channel that this consumer subscribes to is not applied yet (the outbox
  says which there were): the event is early and goes back with a short delay (a longer one
  while that earlier event is failing or long missing) - not a failure;
- otherwise the handler runs inside that transaction and the position moves to seq; commit, ack.

Nothing waits for an event the consumer will never receive: one published before the consumer's
horizon (a new durable consumer starts at new events; positions start with this code), one purged
from the outbox, or one still missing after `PATIENCE_SECS` (logged). A failing event is retried
with backoff and given up after `MAX_FAILURES` attempts - counted in the position row, shared by all
processes - and giving up moves the position, so the events behind it flow again. JetStream's own
`max_deliver` is off: early deliveries would use it up and the server would drop the event silently.

An event without a channel (no seq) is handled as it comes, in a transaction of its own."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter

from actors.relay import STREAM
from storage import consumer_positions as positions
from storage.channels import head
from storage.db import transaction

log = logging.getLogger(__name__)

CONSUMED = Counter("sharehub_events_consumed_total", "Domain events handled by consumers", ["consumer", "outcome"])

_BATCH = 100
_FETCH_WAIT_SECS = 1.0
_ACK_WAIT_SECS = 30.0
# A poison event is retried this often, then left for an operator (logged, counted, acked).
MAX_FAILURES = 20
# An early event comes back after 20 ms, 40 ms, ... at most 200 ms: its predecessor is usually a
# few milliseconds behind (published concurrently, or in another process's hands). The cap is
# low because a burst on one entity is a chain - each event waits for the one before it - and a
# long chain pays the delay once per link (with a 5 s cap, 24 quick chat messages took 20 s).
_EARLY_DELAY_STEP_SECS = 0.02
_EARLY_MAX_DELAY_SECS = 0.2
# A channel whose next event is failing (retried with backoff) or has been missing this long is
# stalled: the events behind it are asked about every `_STALLED_DELAY_SECS` only.
_STALLED_AFTER_SECS = 2.0
_STALLED_DELAY_SECS = 2.0
# How long a channel waits for a published event that never arrives before going on without it.
# Longer than ack_wait: an event held by a process that died is redelivered after ack_wait.
PATIENCE_SECS = 120.0


class Handler(Protocol):
    async def __call__(self, event: dict[str, Any], conn: asyncpg.Connection | None = None) -> None:
        """Apply one event. `conn` is the transaction that moves the consumer's position in the
        event's channel: database effects written on it commit with the position, exactly once.
        Effects elsewhere (a shard command) must be idempotent by themselves - a failed commit runs
        them again. Without `conn` (a replay, a test) the handler opens its own transaction."""


@dataclass(frozen=True)
class Consumer:
    name: str
    subjects: tuple[str, ...]
    handle: Handler
    db: asyncpg.Pool


class Outcome(enum.Enum):
    APPLIED = "ok"
    DUPLICATE = "duplicate"
    EARLY = "early"  # an earlier event is on its way
    STALLED = "stalled"  # an earlier event is failing, or long missing


@dataclass(frozen=True)
class Channel:
    """Where an event stands: its channel and its seq there."""

    kind: str
    entity_id: str
    epoch: str
    seq: int

    def key(self, consumer: Consumer) -> positions.Key:
        return positions.Key(consumer.name, self.kind, self.entity_id)

    @staticmethod
    def of(event: dict[str, Any]) -> Channel | None:
        kind, entity_id, epoch, seq = (event.get(k) for k in ("kind", "entity_id", "epoch", "seq"))
        if not (isinstance(kind, str) and isinstance(entity_id, str) and isinstance(epoch, str)):
            return None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return None
        return Channel(kind, entity_id, epoch, seq)


@functools.lru_cache(maxsize=64)
def subject_patterns(subjects: tuple[str, ...]) -> list[str]:
    """NATS filter subjects as anchored POSIX regexes, for matching outbox subjects in SQL:
    `*` is one token, a final `>` one or more."""
    patterns = []
    for subject in subjects:
        tokens = [r"[^.]+" if t == "*" else ".+" if t == ">" else re.escape(t) for t in subject.split(".")]
        patterns.append("^" + r"\.".join(tokens) + "$")
    return patterns


async def apply_in_order(consumer: Consumer, event: dict[str, Any], horizon: datetime) -> Outcome:
    """Apply `event` if it is its channel's next for this consumer (see the module docstring).
    `horizon`: events published before it are never waited for."""
    channel = Channel.of(event)
    if channel is None:
        async with transaction(consumer.db, f"consume_{consumer.name}") as conn:
            await consumer.handle(event, conn)
        return Outcome.APPLIED
    async with transaction(consumer.db, f"consume_{consumer.name}") as conn:
        key = channel.key(consumer)
        position = await positions.lock(conn, key, channel.epoch)
        if position.epoch != channel.epoch:
            if not await _current_epoch(conn, channel):
                # From a history the channel has since dropped: it cannot be ordered against the
                # new one, nor move its position. Applied as it comes (effects are idempotent).
                await consumer.handle(event, conn)
                return Outcome.APPLIED
            position = await positions.restart(conn, key, channel.epoch)
        if channel.seq <= position.seq:
            return Outcome.DUPLICATE
        missing = await positions.first_missing(
            conn, channel.kind, channel.entity_id, channel.epoch, after=position.seq, before=channel.seq,
            subject_patterns=subject_patterns(consumer.subjects), horizon=horizon,
            failing_seq=position.failing_seq)
        if missing is not None:
            patient = missing.unpublished or missing.failing or (position.waited_secs or 0.0) < PATIENCE_SECS
            if patient:
                if position.waited_secs is None:
                    await positions.wait(conn, key)
                stalled = missing.failing or (position.waited_secs or 0.0) >= _STALLED_AFTER_SECS
                return Outcome.STALLED if stalled else Outcome.EARLY
            log.warning("consumer %s stops waiting for %s:%s seq %d (missing for %.0f s); applies seq %d",
                        consumer.name, channel.kind, channel.entity_id, missing.seq, position.waited_secs,
                        channel.seq)
            CONSUMED.labels(consumer.name, "gap_skipped").inc()
        await consumer.handle(event, conn)
        await positions.advance(conn, key, channel.epoch, channel.seq)
    return Outcome.APPLIED


async def _current_epoch(conn: asyncpg.Connection, channel: Channel) -> bool:
    """Is the event's epoch the channel's current one (or has the channel no head: a reset)?"""
    epoch, _ = await head(conn, channel.kind, channel.entity_id)
    return epoch in ("", channel.epoch)


async def count_failure(consumer: Consumer, event: dict[str, Any], delivered: int) -> int:
    """Record a failed attempt at `event`; returns how many in a row. At `MAX_FAILURES` the event
    is given up and the position moves past it in the same transaction. An event without a
    channel is counted by JetStream's deliveries."""
    channel = Channel.of(event)
    if channel is None:
        return delivered
    async with transaction(consumer.db, f"consume_{consumer.name}_failed") as conn:
        key = channel.key(consumer)
        failures = await positions.record_failure(conn, key, channel.epoch, channel.seq)
        if failures is None:
            return delivered
        if failures >= MAX_FAILURES:
            await positions.advance(conn, key, channel.epoch, channel.seq)
        return failures


def _config(consumer: Consumer) -> ConsumerConfig:
    return ConsumerConfig(
        name=consumer.name, durable_name=consumer.name, filter_subjects=list(consumer.subjects),
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, ack_wait=_ACK_WAIT_SECS,
        # Unlimited: our own failure count decides when to give up, not the server's.
        max_deliver=-1, max_ack_pending=1000,
    )


async def run_consumer(js: JetStreamContext, consumer: Consumer, stop: asyncio.Event) -> None:
    """Pull and handle events until `stop`; survives NATS restarts (it re-subscribes)."""
    while not stop.is_set():
        try:
            # Create the durable consumer, or bring an existing one to this configuration.
            info = await js.add_consumer(STREAM, _config(consumer))
            horizon = max(info.created, await positions.horizon(consumer.db, consumer.name))
            subscription = await js.pull_subscribe_bind(durable=consumer.name, stream=STREAM)
            await _pull(subscription, consumer, horizon, stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("consumer %s lost its subscription; retrying", consumer.name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def _pull(subscription: JetStreamContext.PullSubscription, consumer: Consumer, horizon: datetime,
                stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            messages = await subscription.fetch(_BATCH, timeout=_FETCH_WAIT_SECS)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        parsed = []
        for message in messages:
            event = _parse(message.data)
            if event is None:
                log.error("consumer %s drops an event that is not a JSON object on %s", consumer.name,
                          message.subject)
                CONSUMED.labels(consumer.name, "gave_up").inc()
                await message.ack()
            else:
                parsed.append((message, event))
        # Each channel's events of a batch in seq order (concurrent publishes swap neighbours), so
        # fewer of them come back as early; the sort is stable and order across channels is free.
        parsed.sort(key=lambda item: _seq_of(item[1]))
        for message, event in parsed:
            await _deliver(consumer, horizon, message, event)


def _seq_of(event: dict[str, Any]) -> int:
    seq = event.get("seq")
    return seq if isinstance(seq, int) else 0


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


async def _deliver(consumer: Consumer, horizon: datetime, message: Msg, event: dict[str, Any]) -> None:
    delivered = message.metadata.num_delivered if message.metadata else 1
    try:
        outcome = await apply_in_order(consumer, event, horizon)
    except Exception:
        CONSUMED.labels(consumer.name, "failed").inc()
        try:
            failures = await count_failure(consumer, event, delivered)
        except Exception:
            log.warning("consumer %s cannot count a failure", consumer.name, exc_info=True)
            failures = min(delivered, MAX_FAILURES - 1)  # the database is away: try again later
        if failures >= MAX_FAILURES:
            log.exception("consumer %s gives up on %s", consumer.name, message.subject)
            CONSUMED.labels(consumer.name, "gave_up").inc()
            await message.ack()
        else:
            log.warning("consumer %s failed on %s; redelivery later", consumer.name, message.subject, exc_info=True)
            await message.nak(delay=min(30.0, 0.5 * 2 ** min(failures, 16)))
        return
    CONSUMED.labels(consumer.name, outcome.value).inc()
    if outcome is Outcome.EARLY:
        await message.nak(delay=min(_EARLY_MAX_DELAY_SECS, _EARLY_DELAY_STEP_SECS * delivered))
    elif outcome is Outcome.STALLED:
        await message.nak(delay=_STALLED_DELAY_SECS)
    else:
        await message.ack()


async def run_consumers(js: JetStreamContext, consumers: list[Consumer], stop: asyncio.Event) -> None:
    await asyncio.gather(*(run_consumer(js, consumer, stop) for consumer in consumers))

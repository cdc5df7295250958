"""Durable JetStream consumers of domain events, shared by every gateway process.

A consumer is a name, the subjects it wants and an async handler of one event payload. All
processes pull from the same durable consumer, so each event goes to one of them; an event whose
handler fails is not acked and comes back after `ack_wait` (at least once). Handlers must
therefore be idempotent - by a deterministic command id (the entity runtime stores each command's
first result) or by `storage.runtime.mark_consumed` in the handler's transaction. Within one
process a fetched batch is handled in stream order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import orjson
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter

from actors.relay import STREAM

log = logging.getLogger(__name__)

CONSUMED = Counter("sharehub_events_consumed_total", "Domain events handled by consumers", ["consumer", "outcome"])

_BATCH = 100
_FETCH_WAIT_SECS = 1.0
_ACK_WAIT_SECS = 30.0
# A poison event is retried this often, then left for an operator (logged, counted, acked).
_MAX_DELIVERIES = 20

Handler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Consumer:
    name: str
    subjects: tuple[str, ...]
    handle: Handler


async def run_consumer(js: JetStreamContext, consumer: Consumer, stop: asyncio.Event) -> None:
    """Pull and handle events until `stop`; survives NATS restarts (it re-subscribes)."""
    while not stop.is_set():
        try:
            subscription = await js.pull_subscribe(
                "", durable=consumer.name, stream=STREAM,
                config=ConsumerConfig(
                    filter_subjects=list(consumer.subjects), ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.NEW, ack_wait=_ACK_WAIT_SECS, max_deliver=_MAX_DELIVERIES,
                    max_ack_pending=1000,
                ),
            )
            await _pull(subscription, consumer, stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("consumer %s lost its subscription; retrying", consumer.name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def _pull(subscription: JetStreamContext.PullSubscription, consumer: Consumer, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            messages = await subscription.fetch(_BATCH, timeout=_FETCH_WAIT_SECS)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for message in messages:
            try:
                await consumer.handle(orjson.loads(message.data))
            except Exception:
                CONSUMED.labels(consumer.name, "failed").inc()
                delivered = message.metadata.num_delivered if message.metadata else 0
                if delivered >= _MAX_DELIVERIES:
                    log.exception("consumer %s gives up on %s", consumer.name, message.subject)
                    await message.ack()
                else:
                    log.warning("consumer %s failed on %s; redelivery later", consumer.name, message.subject,
                                exc_info=True)
                    await message.nak(delay=min(30.0, 0.5 * 2 ** delivered))
                continue
            CONSUMED.labels(consumer.name, "ok").inc()
            await message.ack()


async def run_consumers(js: JetStreamContext, consumers: list[Consumer], stop: asyncio.Event) -> None:
    await asyncio.gather(*(run_consumer(js, consumer, stop) for consumer in consumers))

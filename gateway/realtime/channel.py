"""One channel's local watchers and exact, ordered delivery to them.

Events reach a gateway over core NATS, which may drop or reorder them; every event carries its
channel's gap-free `seq` (storage.runtime.add_outbox_events), and the outbox keeps them. So a
channel remembers the last seq it delivered: an event at or below it is a duplicate (dropped),
the next one is delivered, and one further ahead means some were missed - they are read from
the outbox and delivered first, in order. If the outbox no longer has them (purged), watchers
get `resync` (refetch over REST, continue from seq).

Everything that changes what a channel delivered - a NATS event, a new watcher's replay, a
catch-up after a NATS reconnect - runs under the channel's lock, so a watcher added at seq N
gets every event after N exactly once. Each event is encoded once per audience and the same
bytes go on every watcher's queue."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from gateway.realtime import protocol
from gateway.realtime.access import Audience, for_audience
from gateway.realtime.connection import Connection
from gateway.realtime.metrics import WS_DELIVERIES, WS_DUPLICATES, WS_FANOUT_LATENCY, WS_GAP_FILLS, WS_RESYNCS
from gateway.realtime.protocol import ChannelRef
from sharehub.errors import unavailable
from storage import channels as history_store
from storage.channels import Replay

log = logging.getLogger(__name__)
# Sockets written per turn of the event loop during a fan-out.
_YIELD_EVERY = 500


class History(Protocol):
    """A channel's committed events (the outbox), as the channel needs them."""

    async def head(self) -> tuple[str, int]: ...

    async def between(self, after: int, up_to: int) -> list[dict[str, Any]]: ...

    async def replay(self, since: int, epoch: str | None) -> Replay: ...


class OutboxHistory:
    __slots__ = ("entity_id", "kind", "pool")

    def __init__(self, pool: asyncpg.Pool, kind: str, entity_id: str) -> None:
        self.pool, self.kind, self.entity_id = pool, kind, entity_id

    async def head(self) -> tuple[str, int]:
        return await history_store.head(self.pool, self.kind, self.entity_id)

    async def between(self, after: int, up_to: int) -> list[dict[str, Any]]:
        return await history_store.events_between(self.pool, self.kind, self.entity_id, after, up_to)

    async def replay(self, since: int, epoch: str | None) -> Replay:
        return await history_store.replay(self.pool, self.kind, self.entity_id, since, epoch)


def _occurred(payload: dict[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(payload["occurred_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


class Channel:
    __slots__ = ("closed", "epoch", "full", "history", "joining", "last", "lock", "parties", "public", "ref",
                 "subscriptions")

    def __init__(self, ref: ChannelRef, history: History, parties: tuple[str, ...] = ()) -> None:
        self.ref = ref
        self.history = history
        self.parties = parties
        self.lock = asyncio.Lock()
        self.last = 0  # the last seq delivered (or accounted for by a resync)
        self.epoch = ""  # "" until the channel has had an event
        self.full: set[Connection] = set()
        self.public: set[Connection] = set()
        self.joining = 0  # subscribes in progress (the channel must not be torn down under them)
        self.subscriptions: list[Subscription] = []
        self.closed = False

    @property
    def idle(self) -> bool:
        return not self.full and not self.public and self.joining == 0

    def watchers(self) -> int:
        return len(self.full) + len(self.public)

    # ------------------------------------------------------------------------ watchers

    async def join(self, conn: Connection, audience: Audience, since: int | None, epoch: str | None,
                   msg_id: str | None) -> None:
        """Add a watcher: `subscribed` at the seq its live stream continues from, preceded (when
        `since` is given) by the events it missed, or by `resync` when they cannot be replayed."""
        async with self.lock:
            if self.closed:
                raise unavailable("The channel could not be opened; try again.")
            name = self.ref.name
            if since is None:
                current_epoch, head = await self.history.head()
                await self._catch_up(current_epoch, head)
                out = [protocol.subscribed(name, self.epoch, self.last, msg_id)]
            else:
                replay = await self.history.replay(since, epoch)
                await self._catch_up(replay.epoch, replay.head)
                out = [protocol.subscribed(name, self.epoch, self.last, msg_id)]
                if replay.complete:
                    for payload in replay.events:
                        seen = for_audience(payload, audience)
                        if seen is not None and since < payload["seq"] <= self.last:
                            out.append(protocol.event(name, seen))
                else:
                    WS_RESYNCS.inc()
                    out.append(protocol.resync(name, self.epoch, self.last, msg_id))
            # Queued before the lock is released: nothing newer can reach this watcher first.
            conn.send_many(out)
            (self.full if audience is Audience.FULL else self.public).add(conn)

    def leave(self, conn: Connection) -> None:
        self.full.discard(conn)
        self.public.discard(conn)

    # ------------------------------------------------------------------------ delivery

    async def on_event(self, msg: Msg) -> None:
        """A NATS message on `<kind>.<id>.>` (one channel's messages are handled one at a time)."""
        try:
            payload = orjson.loads(msg.data)
            seq, epoch = payload["seq"], payload.get("epoch", "")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("event without a channel seq ignored", extra={"subject": msg.subject})
            return
        if not isinstance(seq, int):
            return
        try:
            async with self.lock:
                if not self.closed:
                    await self._accept(payload, seq, epoch)
        except Exception:
            log.exception("delivering an event failed", extra={"channel": self.ref.name})

    async def catch_up(self) -> None:
        """Deliver whatever the outbox has beyond what was delivered (after a NATS reconnect)."""
        async with self.lock:
            if not self.closed:
                await self._catch_up(*await self.history.head())

    async def _accept(self, payload: dict[str, Any], seq: int, epoch: str) -> None:
        if self.epoch and epoch != self.epoch:
            # The channel's history was reset: the head says where it stands now.
            await self._catch_up(*await self.history.head())
            return
        self.epoch = self.epoch or epoch
        if seq <= self.last:
            WS_DUPLICATES.inc()
            return
        if seq > self.last + 1:
            await self._fill(seq - 1)
        await self._deliver(payload)
        self.last = seq

    async def _catch_up(self, epoch: str, head: int) -> None:
        """Bring the channel to the outbox head `head` (read under the lock)."""
        if self.epoch and epoch and epoch != self.epoch:
            self.epoch, self.last = epoch, head
            self._resync()
            return
        self.epoch = self.epoch or epoch
        if head <= self.last:
            return
        if self.watchers():
            await self._fill(head)
        self.last = head

    async def _fill(self, up_to: int) -> None:
        """Deliver the events after `last` up to `up_to` from the outbox; what it cannot find
        (purged, or the database is unreachable) becomes a resync."""
        try:
            missing = await self.history.between(self.last, up_to)
        except Exception:
            log.warning("reading missed events failed; watchers resync", exc_info=True,
                        extra={"channel": self.ref.name})
            missing = []
        for payload in missing:
            if payload.get("seq") == self.last + 1:
                WS_GAP_FILLS.inc()
                await self._deliver(payload)
                self.last = payload["seq"]
        if self.last < up_to:
            self.last = up_to
            self._resync()

    async def _deliver(self, payload: dict[str, Any]) -> None:
        """Encode once per audience, write the same frame to every watcher. A big fan-out gives
        the loop back every `_YIELD_EVERY` sockets, so one popular listing does not stall chats
        and requests for its whole length (the channel lock keeps this channel's order; a
        snapshot of the watchers, because a socket may leave meanwhile)."""
        name = self.ref.name
        delivered = 0
        for watchers, audience in ((self.full, Audience.FULL), (self.public, Audience.PUBLIC)):
            if not watchers:
                continue
            seen = payload if audience is Audience.FULL else for_audience(payload, audience)
            if seen is None:
                continue
            data = protocol.event(name, seen)
            frame = protocol.text_frame(data)
            snapshot = list(watchers)
            for index, conn in enumerate(snapshot, start=1):
                conn.send(data, frame)
                if index % _YIELD_EVERY == 0 and index < len(snapshot):
                    await asyncio.sleep(0)
            delivered += len(snapshot)
        if delivered:
            WS_DELIVERIES.inc(delivered)
            occurred = _occurred(payload)
            if occurred is not None:
                WS_FANOUT_LATENCY.observe(max(0.0, time.time() - occurred))

    def _resync(self) -> None:
        WS_RESYNCS.inc()
        self.broadcast(protocol.resync(self.ref.name, self.epoch, self.last))

    # ------------------------------------------------------------------------ ephemeral

    def broadcast(self, data: bytes, *, skip_user: uuid.UUID | None = None) -> None:
        """The same bytes to every watcher (presence, typing: not part of the seq stream)."""
        frame = protocol.text_frame(data)
        for watchers in (self.full, self.public):
            for conn in watchers:
                if skip_user is None or conn.claims.user_id != skip_user:
                    conn.send(data, frame)

    async def on_typing(self, msg: Msg) -> None:
        try:
            user_id = uuid.UUID(orjson.loads(msg.data)["user_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        self.broadcast(protocol.typing(self.ref.name, str(user_id)), skip_user=user_id)

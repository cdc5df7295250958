"""The process's hub: which local sockets watch which channels, the NATS subscriptions that feed
them, presence, and one timer loop over every socket.

A gateway subscribes to a channel's NATS subjects only while a local client watches it (core
NATS: JetStream publishes are ordinary messages, so a core subscription sees the relay's
publishes at once) and unsubscribes when the last watcher leaves; N gateway processes therefore
each carry only their own clients' channels. Every second one loop re-checks, for all sockets at
once (one Redis round trip), that their tokens are not expired or revoked, refreshes presence
every few seconds, and notices a NATS reconnect - after which every channel catches up from
the outbox, since core NATS does not redeliver what was published while it was away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from gateway.chat_actions import EPHEMERAL_SUBJECT
from gateway.realtime import protocol
from gateway.realtime.access import Grant
from gateway.realtime.channel import Channel, OutboxHistory
from gateway.realtime.connection import CLOSE_GOING_AWAY, CLOSE_UNAUTHORIZED, Connection
from gateway.realtime.metrics import WS_CHANNELS, WS_CONNECTIONS
from gateway.realtime.protocol import ChannelRef
from sharehub import presence
from sharehub.errors import ApiError, unavailable
from sharehub.platform import Platform
from sharehub.revocation import revoked_among

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 100
TICK_SECS = 1.0
PRESENCE_REFRESH_SECS = 15.0
_FLUSH_TIMEOUT_SECS = 1


class _PresenceWatch:
    """The chat channels here that show one user's presence, and the subscription to it."""

    __slots__ = ("channels", "subscription")

    def __init__(self) -> None:
        self.channels: set[Channel] = set()
        self.subscription: Subscription | None = None


class Hub:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.connections: set[Connection] = set()
        self.channels: dict[tuple[str, str], Channel] = {}
        self._presence: dict[str, _PresenceWatch] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._reconnects = 0
        self._presence_refreshed = time.monotonic()
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.platform.nats is not None:
            self._reconnects = self.platform.nats.stats["reconnects"]
        self._ticker = asyncio.get_running_loop().create_task(self._run_ticker())

    async def shutdown(self) -> None:
        """Close every socket (1001): clients reconnect to another process and resume."""
        for conn in list(self.connections):
            conn.close(CLOSE_GOING_AWAY, "server shutting down")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for chan in list(self.channels.values()):
            await self._close_channel(chan)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------------ sockets

    async def attach(self, conn: Connection, *, first: bool | None = None) -> None:
        """`first`: the socket is already in presence (its slot was reserved before the upgrade,
        gateway/realtime/routes.py `_accept`) and was the user's first; None: record it here."""
        self.connections.add(conn)
        WS_CONNECTIONS.inc()
        user_id = str(conn.claims.user_id)
        if first is None:
            try:
                first = await presence.mark_online(self.platform.redis, user_id, conn.conn_id)
            except Exception:
                log.warning("presence unavailable", exc_info=True)
                return
        if first:
            await self._announce(user_id, online=True)

    async def detach(self, conn: Connection) -> None:
        conn.closing = True
        conn.queue = None
        if conn.writer is not None:
            conn.writer.cancel()
        if conn in self.connections:
            self.connections.discard(conn)
            WS_CONNECTIONS.dec()
        # Leave every channel before the first await (a cancelled handler must not leave this
        # socket behind as a watcher), then release the channels nobody watches any more.
        retired = []
        for chan in (conn.channels or {}).values():
            chan.leave(conn)
            if chan.idle and self._retire(chan):
                retired.append(chan)
        conn.channels = None
        for chan in retired:
            await self._release(chan)
        user_id = str(conn.claims.user_id)
        try:
            last = await presence.mark_offline(self.platform.redis, user_id, conn.conn_id)
        except Exception:
            log.warning("presence unavailable", exc_info=True)
            return
        if last:
            await self._announce(user_id, online=False)

    async def _announce(self, user_id: str, *, online: bool) -> None:
        nc = self.platform.nats
        if nc is None:
            return
        with contextlib.suppress(nats.errors.Error):
            await nc.publish(presence.PRESENCE_SUBJECT.format(user_id=user_id),
                             orjson.dumps({"user_id": user_id, "online": online}))

    # ------------------------------------------------------------------------ channels

    async def subscribe(self, conn: Connection, ref: ChannelRef, grant: Grant, *, since: int | None,
                        epoch: str | None, msg_id: str | None) -> None:
        subscriptions = conn.subscriptions()
        if ref.name in subscriptions:
            raise ApiError(409, "already_subscribed", "This socket already watches the channel.")
        if len(subscriptions) >= MAX_SUBSCRIPTIONS:
            raise ApiError(429, "too_many_subscriptions",
                           f"A socket watches at most {MAX_SUBSCRIPTIONS} channels; unsubscribe from some first.")
        chan = self.channels.get(ref.key)
        created = chan is None
        if chan is None:
            chan = self.channels[ref.key] = Channel(
                ref, OutboxHistory(self.platform.db, ref.kind, ref.entity_id), grant.parties)
            WS_CHANNELS.inc()
        chan.joining += 1
        subscriptions[ref.name] = chan  # taken now: the socket's next message sees it
        try:
            if created:
                await self._open(chan)
            await chan.join(conn, grant.audience, since, epoch, msg_id)
        except BaseException:
            if subscriptions.get(ref.name) is chan:
                del subscriptions[ref.name]
            raise
        finally:
            chan.joining -= 1
            if chan.idle:
                await self._close_channel(chan)
        if chan.parties and not conn.closing:
            await self._send_presence(conn, chan)

    async def unsubscribe(self, conn: Connection, name: str) -> None:
        chan = conn.subscriptions().pop(name, None)
        if chan is not None:
            chan.leave(conn)
            if chan.idle:
                await self._close_channel(chan)

    async def _open(self, chan: Channel) -> None:
        """Subscribe to the channel's subjects before its head is read (the caller's join waits
        for the lock taken here), so no event committed after that read can be missed."""
        nc = self.platform.nats
        async with chan.lock:
            try:
                if nc is None:
                    raise unavailable("Live events are not available right now.")
                kind, entity_id = chan.ref.key
                chan.subscriptions.append(await nc.subscribe(f"{kind}.{entity_id}.>", cb=chan.on_event))
                if kind == "chat":
                    chan.subscriptions.append(
                        await nc.subscribe(EPHEMERAL_SUBJECT.format(room_id=entity_id), cb=chan.on_typing))
                for user_id in chan.parties:
                    await self._watch_presence(user_id, chan)
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    # Make sure the server has the subscriptions; if NATS is away right now, the
                    # catch-up after its reconnect covers whatever this misses.
                    await nc.flush(timeout=_FLUSH_TIMEOUT_SECS)
            except BaseException:
                await self._close_channel(chan)
                raise

    async def _close_channel(self, chan: Channel) -> None:
        if self._retire(chan):
            await self._release(chan)

    def _retire(self, chan: Channel) -> bool:
        """Take the channel out of service at once: a subscribe from now on opens a new one."""
        if chan.closed:
            return False
        chan.closed = True
        if self.channels.get(chan.ref.key) is chan:
            del self.channels[chan.ref.key]
            WS_CHANNELS.dec()
        return True

    async def _release(self, chan: Channel) -> None:
        subscriptions, chan.subscriptions = chan.subscriptions, []
        for user_id in chan.parties:
            await self._unwatch_presence(user_id, chan)
        for subscription in subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    # ------------------------------------------------------------------------ presence

    async def _watch_presence(self, user_id: str, chan: Channel) -> None:
        watch = self._presence.get(user_id)
        if watch is not None:
            watch.channels.add(chan)
            return
        watch = self._presence[user_id] = _PresenceWatch()
        watch.channels.add(chan)
        assert self.platform.nats is not None
        watch.subscription = await self.platform.nats.subscribe(
            presence.PRESENCE_SUBJECT.format(user_id=user_id), cb=self._presence_handler(user_id))
        if not watch.channels:  # every chat showing this user closed while subscribing
            await self._drop_presence(user_id, watch)

    async def _unwatch_presence(self, user_id: str, chan: Channel) -> None:
        watch = self._presence.get(user_id)
        if watch is None:
            return
        watch.channels.discard(chan)
        if not watch.channels and watch.subscription is not None:
            await self._drop_presence(user_id, watch)

    async def _drop_presence(self, user_id: str, watch: _PresenceWatch) -> None:
        if self._presence.get(user_id) is watch:
            del self._presence[user_id]
        if watch.subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await watch.subscription.unsubscribe()

    def _presence_handler(self, user_id: str) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            try:
                online = bool(orjson.loads(msg.data)["online"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return
            watch = self._presence.get(user_id)
            for chan in list(watch.channels if watch else ()):
                chan.broadcast(protocol.presence(chan.ref.name, user_id, online))

        return handle

    async def _send_presence(self, conn: Connection, chan: Channel) -> None:
        try:
            online = await presence.online_among(self.platform.redis, list(chan.parties))
        except Exception:
            log.warning("presence unavailable", exc_info=True)
            return
        for user_id in chan.parties:
            conn.send(protocol.presence(chan.ref.name, user_id, online[user_id]))

    # ------------------------------------------------------------------------ the timer loop

    async def _run_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + TICK_SECS, loop.time())
            await asyncio.sleep(due - loop.time())
            try:
                await self.tick()
            except Exception:
                log.warning("websocket housekeeping failed; next round in a second", exc_info=True)

    async def tick(self) -> None:
        self._check_reconnect()
        sockets = [conn for conn in self.connections if not conn.closing]
        if not sockets:
            return
        now = time.time()
        valid: list[Connection] = []
        for conn in sockets:
            if conn.claims.expires_at <= now:
                conn.close(CLOSE_UNAUTHORIZED, "token expired")
            else:
                valid.append(conn)
        revoked = await revoked_among(self.platform, [conn.claims for conn in valid])
        for conn, is_revoked in zip(valid, revoked, strict=True):
            if is_revoked:
                conn.close(CLOSE_UNAUTHORIZED, "token revoked")
        if time.monotonic() - self._presence_refreshed >= PRESENCE_REFRESH_SECS:
            self._presence_refreshed = time.monotonic()
            await presence.refresh_many(
                self.platform.redis, [(str(c.claims.user_id), c.conn_id) for c in valid if not c.closing])

    def _check_reconnect(self) -> None:
        nc = self.platform.nats
        if nc is None or not nc.is_connected:
            return
        reconnects = nc.stats["reconnects"]
        if reconnects != self._reconnects:
            self._reconnects = reconnects
            log.info("NATS reconnected; channels catch up from the outbox", extra={"channels": len(self.channels)})
            self._spawn(self._catch_up_all())

    async def _catch_up_all(self) -> None:
        for chan in list(self.channels.values()):
            try:
                await chan.catch_up()
            except Exception:
                log.warning("catching up a channel failed", exc_info=True, extra={"channel": chan.ref.name})

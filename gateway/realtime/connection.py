"""One client socket: its bounded send queue and lazy writer, its subscriptions, its budget.

Memory per idle socket is what decides how many one process holds, so a connection is one
slotted object: no queue list, writer task or subscription dict until it needs one. The writer
task exists only while there is something to write; the hub puts the *same* bytes object on
every watcher's queue (encoded once per audience)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from gateway.realtime import protocol
from gateway.realtime.limits import MessageBudget
from gateway.realtime.metrics import WS_CLOSES, WS_SLOW_CONSUMER_CLOSES
from sharehub.security.tokens import AccessClaims

if TYPE_CHECKING:
    from gateway.realtime.channel import Channel

log = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's).
CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4001  # logged out, banned, roles changed or token expired: reconnect with a new token
CLOSE_SLOW_CONSUMER = 4008
CLOSE_TOO_MANY_MESSAGES = 4029
# How long a closing handshake may take before the TCP connection is dropped (a client that
# does not read never answers it).
CLOSE_TIMEOUT_SECS = 2.0

# Bytes the transport may hold unsent before messages queue for the writer task instead (which
# waits for the socket to drain, and whose queue bound detects a slow consumer).
DIRECT_WRITE_LIMIT = 64 * 1024

# Closing tasks are referenced here until they finish (the loop keeps only weak references).
_closing: set[asyncio.Task[None]] = set()

# Sockets with messages sent during this turn of the event loop, written at its end: a single
# message goes out as the frame prebuilt for every watcher, several (a burst of events) as one
# frame - the same latency as writing at once, far fewer syscalls when events come in bursts.
_dirty: list[Connection] = []


def _flush_dirty() -> None:
    dirty = _dirty[:]
    _dirty.clear()
    for conn in dirty:
        conn.flush()


class Connection:
    __slots__ = ("budget", "channels", "claims", "closing", "conn_id", "limit", "pending", "queue", "transport",
                 "typing_at", "writer", "ws")

    def __init__(self, ws: web.WebSocketResponse[Any], transport: asyncio.Transport | None,
                 claims: AccessClaims, limit: int) -> None:
        self.ws = ws
        self.transport = transport
        self.claims = claims
        self.limit = limit
        self.conn_id = uuid.uuid4().hex  # this socket in Redis presence
        # Sent this turn of the loop, with the prebuilt frame of each (None: build it here).
        self.pending: list[tuple[bytes, bytes | None]] | None = None
        self.queue: list[bytes] | None = None
        self.writer: asyncio.Task[None] | None = None
        self.channels: dict[str, Channel] | None = None
        self.budget = MessageBudget(time.monotonic())
        self.typing_at = 0.0
        self.closing = False

    def subscriptions(self) -> dict[str, Channel]:
        if self.channels is None:
            self.channels = {}
        return self.channels

    def send(self, data: bytes, frame: bytes | None = None) -> None:
        """Send one message; never blocks. While the socket keeps up, messages sent during one
        turn of the event loop are written at its end, straight to the transport: one prebuilt
        frame (`frame`, the same bytes for every watcher of a broadcast) or, for several, one
        joined frame - no task, no copy per watcher. A socket that does not keep up gets a
        bounded queue and a writer task; when that queue is full the client is too slow: it is
        disconnected (4008) rather than holding memory or slowing anyone else."""
        if self.closing:
            return
        if self.queue is not None or self.writer is not None:
            self._enqueue(data)
            return
        pending = self.pending
        if pending is None:
            self.pending = [(data, frame)]
            if not _dirty:
                asyncio.get_running_loop().call_soon(_flush_dirty)
            _dirty.append(self)
        else:
            pending.append((data, frame))

    def send_many(self, messages: list[bytes]) -> None:
        """Several messages at once (a replay): they leave together, in order."""
        for data in messages:
            self.send(data)

    def flush(self) -> None:
        """Write what this turn of the loop sent (the end-of-turn callback calls it)."""
        pending, self.pending = self.pending, None
        if not pending or self.closing:
            return
        transport = self.transport
        if self.queue is not None or self.writer is not None or transport is None or transport.is_closing() \
                or transport.get_write_buffer_size() >= DIRECT_WRITE_LIMIT:
            for data, _ in pending:  # the writer task takes over (it waits for the socket to drain)
                self._enqueue(data)
            return
        if len(pending) == 1:
            data, frame = pending[0]
            transport.write(frame if frame is not None else protocol.text_frame(data))
            return
        for joined in protocol.frames([data for data, _ in pending]):
            transport.write(protocol.text_frame(joined))

    def _enqueue(self, data: bytes) -> None:
        queue = self.queue
        if queue is None:
            queue = self.queue = []
        if len(queue) >= self.limit:
            WS_SLOW_CONSUMER_CLOSES.inc()
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        queue.append(data)
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self.queue and not self.closing:
                batch, self.queue = self.queue, None
                for frame in protocol.frames(batch):
                    await self.ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            # The peer went away mid-write; the reading side notices and cleans up.
            self.closing = True
            self.queue = None
        finally:
            self.writer = None

    def close(self, code: int, reason: str) -> None:
        """Close from anywhere without awaiting (the hub's loop, a fan-out, the reader)."""
        if self.closing:
            return
        self.closing = True
        self.queue = None
        WS_CLOSES.labels(reason).inc()
        if self.writer is not None:
            # The frame being written is already in the transport; what is queued is dropped.
            self.writer.cancel()
        task = asyncio.get_running_loop().create_task(self._close(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECS):
                await self.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        except Exception:
            log.warning("closing a websocket failed", exc_info=True)
        finally:
            # After a clean handshake the transport is closed already and this is a no-op; after a
            # timeout it drops what a client that does not read would never take (a plain close
            # would wait to flush it).
            if self.transport is not None:
                self.transport.abort()

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


class Connection:
    __slots__ = ("budget", "channels", "claims", "closing", "conn_id", "limit", "queue", "transport", "typing_at",
                 "writer", "ws")

    def __init__(self, ws: web.WebSocketResponse[Any], transport: asyncio.Transport | None,
                 claims: AccessClaims, limit: int) -> None:
        self.ws = ws
        self.transport = transport
        self.claims = claims
        self.limit = limit
        self.conn_id = uuid.uuid4().hex  # this socket in Redis presence
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
        """Send one message; never blocks. While nothing is queued and the socket keeps up, the
        frame (`frame`, prebuilt once per broadcast, or built here) goes straight to the
        transport: no task, no copy per watcher. Otherwise it waits in the bounded queue for the
        writer task, and a client whose queue is full is too slow to keep up: it is disconnected
        (4008) rather than holding memory or slowing anyone else."""
        if self.closing:
            return
        transport = self._direct()
        if transport is not None:
            transport.write(frame if frame is not None else protocol.text_frame(data))
            return
        self._enqueue(data)

    def send_many(self, messages: list[bytes]) -> None:
        """Several messages at once (a replay): as few frames as possible, in order."""
        if self.closing or not messages:
            return
        transport = self._direct()
        if transport is not None:
            for joined in protocol.frames(messages):
                transport.write(protocol.text_frame(joined))
            return
        for data in messages:
            self._enqueue(data)

    def _direct(self) -> asyncio.Transport | None:
        """The transport, when a message may skip the queue: nothing waits before it and the
        socket keeps up."""
        transport = self.transport
        if self.queue is not None or self.writer is not None or transport is None or transport.is_closing():
            return None
        return transport if transport.get_write_buffer_size() < DIRECT_WRITE_LIMIT else None

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

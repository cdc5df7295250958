"""A lean websocket client for benchmarks: thousands of connections in one process.

A full client library spends more CPU per message than the server under test, and then the
benchmark measures the client. This one is an asyncio protocol that speaks just what the
gateway needs (RFC 6455: handshake, masked text frames out, unmasked frames in, ping/pong,
close) and stamps each frame with the time it arrived *before* any parsing, so queueing inside
the client does not show up as server latency.

Why not the `websockets` library, which the tests use: measured (bench/ws_clients.py, numbers in
docs/measurements.md), this costs ~9 us of CPU per received frame and ~3 KiB per socket; websockets'
own asyncio client ~31 us and ~17 KiB, and even its Sans-I/O protocol driven the same lean way
~11-16 us and ~7 KiB. bench/ws.py runs thousands of these beside the gateway on 2 cores, so the
client's CPU shows up in what it reports: in three runs each, alternating, with the Sans-I/O client
its 1 000-watcher fan-out p99 was 36-49 ms (this client: 26-35 ms) and its burst phase 343-620k
deliveries/s (this client: 542-648k)."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from typing import cast

import orjson

# Called with (arrival time, the frame's text messages as bytes; the gateway may put several
# messages in one frame, separated by "\n").
OnMessages = Callable[[float, list[bytes]], None]


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(text: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked client frame (clients must mask)."""
    key = os.urandom(4)
    n = len(text)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + key + _mask(text, key)


class WsClient(asyncio.Protocol):
    __slots__ = ("_buffer", "_request", "_upgraded", "closed", "on_messages", "opened", "transport")

    def __init__(self, host: str, path: str, token: str, on_messages: OnMessages) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: bearer, {token}\r\n\r\n"
        ).encode()
        self._buffer = bytearray()
        self._upgraded = False
        self.on_messages = on_messages
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(1006)

    def send(self, message: dict[str, object]) -> None:
        assert self.transport is not None
        self.transport.write(encode_frame(orjson.dumps(message)))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.write(encode_frame(struct.pack("!H", 1000), opcode=0x8))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(self._buffer[:self._buffer.find(b"\r\n")])
            if b" 101 " not in status_line:
                self.opened.set_exception(ConnectionError(bytes(self._buffer[:end]).decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            del self._buffer[:end + 4]
            self._upgraded = True
            self.opened.set_result(None)
        self._frames(arrived)

    def _frames(self, arrived: float) -> None:
        buffer = self._buffer
        texts: list[bytes] = []
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, offset = struct.unpack_from("!H", buffer, 2)[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, offset = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < offset + length:
                break
            payload = bytes(buffer[offset:offset + length])
            del buffer[:offset + length]
            if opcode == 0x1:
                texts += payload.split(b"\n")
            elif opcode == 0x9 and self.transport is not None:  # ping
                self.transport.write(encode_frame(payload, opcode=0xA))
            elif opcode == 0x8:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
                if self.transport is not None:
                    self.transport.close()
        if texts:
            self.on_messages(arrived, texts)


async def connect(host: str, port: int, token: str, on_messages: OnMessages, *, path: str = "/ws",
                  handshake_secs: float = 30.0) -> WsClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: WsClient(f"{host}:{port}", path, token, on_messages),
                                             host, port)
    await asyncio.wait_for(client.opened, handshake_secs)
    return client

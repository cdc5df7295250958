"""Benchmark: what a websocket *client* costs per socket, for the clients bench/ws.py could use.

    .venv/bin/python bench/ws_clients.py                       # 10 000 sockets, 10 messages each
    .venv/bin/python bench/ws_clients.py --sockets 2000 --rounds 1

bench/ws.py holds 10 000 client sockets in one process on the machine that also runs the gateway
under test, so the client's memory and CPU per socket decide whether it measures the gateway or
itself. Compared, each in a fresh process of its own, against one small aiohttp server (another
process) that accepts the sockets and sends every one of them `--messages` text frames of the size
of a realtime event:
- `lean`: bench/wsclient.py, one asyncio protocol per socket with its own RFC 6455 framing;
- `sansio`: the same shape (one asyncio protocol per socket, no task, no queue) driving websockets'
  Sans-I/O `ClientProtocol` for the handshake, framing, ping/pong and close (`SansIoClient` below);
- `websockets`: the library's asyncio client (`websockets.asyncio.client.connect`), one reader task
  per socket, as an application would use it;
- `aiohttp`: aiohttp's client (`ClientSession.ws_connect`), one reader task per socket.
Printed: memory per open socket (RSS growth / sockets), CPU per handshake, CPU per received
message, CPU while idle; medians over `--rounds`, and each row's CPU per message against `lean`.

Measured (2 shared cores, uvloop, 10 000 sockets x 10 frames of ~300 bytes, medians of 2 rounds,
December 2026):

    client        KiB/socket  handshake us  us/message  idle CPU %  vs lean
    lean                 2.7           141         8.8         0.0    1.00x
    sansio               6.9           200        11.1         0.0    1.26x
    websockets          17.4           744        30.5         2.2    3.45x
    aiohttp             15.4           521        15.3         0.0    1.73x

(An earlier run, while the machine was busier, had `sansio` at 15.6 us against `lean`'s 9.0:
the ratio moves with the load, the order does not. `idle CPU` is the asyncio client's keepalive
ping, one per socket every 20 s.) What that does to bench/ws.py, three runs each, alternating:
the 1 000-watcher fan-out p99 was 26-35 ms with `lean` and 36-49 ms with `sansio`; the burst
phase 542-648k deliveries/s with `lean` and 343-620k with `sansio`.

So bench/ws.py keeps `lean` (bench/wsclient.py); the tests (tests/e2e/test_realtime_ws.py) hold a
handful of sockets and use websockets' asyncio client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import uvloop
import websockets
from aiohttp import web
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import wsclient
from bench.wsclient import OnMessages
from sharehub.devstack.processes import free_port

HERE = Path(__file__).resolve()
VARIANTS = ("lean", "sansio", "websockets", "aiohttp")
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl"  # noqa: S105 - shaped like a JWT, checked by no one
# One realtime event as the gateway frames it (~300 bytes).
EVENT = orjson.dumps({"type": "event", "channel": "listing:0b9f3c52-7a4e-4a58-9a43-1f1d5c0e7a11", "seq": 41,
                      "epoch": "6f1c2d", "event": "availability_changed",
                      "data": {"change": "held", "units": 1, "start": "2027-06-10", "end": "2027-06-12"},
                      "occurred_at": "2026-12-11T10:15:02.123456+00:00"}).decode()
_CONNECT_CONCURRENCY = 200


# ============================================================================ the server


async def serve(port: int) -> None:
    """Accept /ws (subprotocol "bearer"); GET /blast?n=K sends every open socket K event frames."""
    sockets: set[web.WebSocketResponse] = set()

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("bearer",), compress=False, heartbeat=None)
        await ws.prepare(request)
        sockets.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    async def blast(request: web.Request) -> web.Response:
        count = int(request.query["n"])
        for _ in range(count):
            for ws in list(sockets):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(EVENT)
        return web.Response(text=str(len(sockets)))

    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/blast", blast)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


# ============================================================================ the clients


class Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.expected = -1
        self.all_arrived = asyncio.Event()

    def __call__(self, arrived: float, texts: list[bytes]) -> None:
        self.messages += len(texts)
        if self.messages >= self.expected >= 0:
            self.all_arrived.set()


class SansIoClient(asyncio.Protocol):
    """bench/wsclient.py's shape with websockets' Sans-I/O protocol inside: one object per socket,
    bytes fed to `ClientProtocol`, frames stamped on arrival before parsing."""

    def __init__(self, host: str, path: str, token: str, on_messages: OnMessages) -> None:
        self._protocol = ClientProtocol(parse_uri(f"ws://{host}{path}"),
                                        subprotocols=[Subprotocol("bearer"), Subprotocol(token)], max_size=None)
        self.on_messages = on_messages
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._protocol.send_request(self._protocol.connect())
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.receive_eof()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))

    def close(self) -> None:
        if self._protocol.state is State.OPEN:
            self._protocol.send_close(1000)
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        self._protocol.receive_data(data)
        texts: list[bytes] = []
        for event in self._protocol.events_received():
            if isinstance(event, Response):
                if self._protocol.handshake_exc is not None:
                    self.opened.set_exception(ConnectionError(str(self._protocol.handshake_exc)))
                else:
                    self.opened.set_result(None)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                texts += bytes(event.data).split(b"\n")
        self._flush()  # pongs, the close reply
        if texts:
            self.on_messages(arrived, texts)

    def _flush(self) -> None:
        if self.transport is None:
            return
        for chunk in self._protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():  # websockets' signal for "half-close now"
                self.transport.write_eof()
        if self._protocol.state is State.CLOSED:
            self.transport.close()


async def open_lean(port: int, count: int, counter: Counter, *, sansio: bool) -> Callable[[], Awaitable[None]]:
    loop = asyncio.get_running_loop()

    async def one() -> Any:
        if not sansio:
            return await wsclient.connect("127.0.0.1", port, TOKEN, counter)
        _, client = await loop.create_connection(
            lambda: SansIoClient(f"127.0.0.1:{port}", "/ws", TOKEN, counter), "127.0.0.1", port)
        await asyncio.wait_for(client.opened, 30)
        return client

    clients = await _gather_limited(one, count)

    async def close() -> None:
        for client in clients:
            client.close()
    return close


async def open_websockets(port: int, count: int, counter: Counter) -> Callable[[], Awaitable[None]]:
    async def one() -> tuple[ClientConnection, asyncio.Task[None]]:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=None, max_size=None,
                                      subprotocols=[Subprotocol("bearer"), Subprotocol(TOKEN)], open_timeout=60)

        async def read() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    message = await ws.recv(decode=False)
                    counter(time.time(), bytes(message).split(b"\n"))
        return ws, asyncio.create_task(read())

    opened = await _gather_limited(one, count)

    async def close() -> None:
        await asyncio.gather(*(ws.close() for ws, _ in opened), return_exceptions=True)
        await asyncio.gather(*(task for _, task in opened), return_exceptions=True)
    return close


async def open_aiohttp(port: int, count: int, counter: Counter) -> Callable[[], Awaitable[None]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def one() -> tuple[aiohttp.ClientWebSocketResponse, asyncio.Task[None]]:
        ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws", protocols=("bearer", TOKEN), compress=0,
                                      max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_receive=None))

        async def read() -> None:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    counter(time.time(), message.data.encode().split(b"\n"))
        return ws, asyncio.create_task(read())

    opened = await _gather_limited(one, count)

    async def close() -> None:
        await asyncio.gather(*(ws.close() for ws, _ in opened), return_exceptions=True)
        await asyncio.gather(*(task for _, task in opened), return_exceptions=True)
        await session.close()
    return close


async def _gather_limited(open_one: Callable[[], Awaitable[Any]], count: int) -> list[Any]:
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)

    async def one() -> Any:
        async with gate:
            return await open_one()
    return list(await asyncio.gather(*(one() for _ in range(count))))


async def measure_client(variant: str, port: int, sockets: int, messages: int) -> None:
    """In this (fresh) process: open the sockets, sit idle, take a blast; print one JSON line."""
    me = psutil.Process()
    counter = Counter()
    gc.collect()
    rss_before, cpu_before = me.memory_info().rss, time.process_time()
    if variant in ("lean", "sansio"):
        close = await open_lean(port, sockets, counter, sansio=variant == "sansio")
    elif variant == "websockets":
        close = await open_websockets(port, sockets, counter)
    else:
        close = await open_aiohttp(port, sockets, counter)
    cpu_opened = time.process_time()
    await asyncio.sleep(1.0)
    gc.collect()
    rss_opened = me.memory_info().rss
    idle_started, cpu_idle = time.monotonic(), time.process_time()
    await asyncio.sleep(5.0)
    idle_pct = (time.process_time() - cpu_idle) / (time.monotonic() - idle_started) * 100
    cpu_blast = time.process_time()
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/blast",
                                                          params={"n": str(messages)}) as resp:
        held = int(await resp.text())
    expected = held * messages
    counter.expected = expected
    if counter.messages < expected:
        with contextlib.suppress(TimeoutError):  # reported below as received < expected
            await asyncio.wait_for(counter.all_arrived.wait(), 300)
    cpu_done = time.process_time()
    await close()
    print(json.dumps({
        "variant": variant, "held": held, "received": counter.messages, "expected": expected,
        "kib_per_socket": (rss_opened - rss_before) / 1024 / sockets,
        "handshake_us": (cpu_opened - cpu_before) / sockets * 1e6,
        "us_per_message": (cpu_done - cpu_blast) / max(counter.messages, 1) * 1e6,
        "idle_cpu_pct": idle_pct,
    }), flush=True)


# ============================================================================ main


def run(opts: argparse.Namespace) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE), "--serve", str(port)])  # noqa: S603 - this script
    try:
        _wait_for_port(port)
        results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for round_no in range(opts.rounds):
            for variant in VARIANTS:  # taking turns: the machine is shared and noisy
                argv = [sys.executable, str(HERE), "--client", variant, "--port", str(port),
                        "--sockets", str(opts.sockets), "--messages", str(opts.messages)]
                out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=900)  # noqa: S603
                result = json.loads(out.stdout.strip().splitlines()[-1])
                if result["received"] != result["expected"] or result["held"] != opts.sockets:
                    raise RuntimeError(f"round {round_no}: {variant} lost sockets or messages: {result}")
                results[variant].append(result)
                time.sleep(2.0)
    finally:
        server.terminate()
        server.wait(10)
    _print(results, opts)


def _wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError("the server did not start")


def _print(results: dict[str, list[dict[str, float]]], opts: argparse.Namespace) -> None:
    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    print(f"\n{opts.sockets} sockets x {opts.messages} messages, medians of {opts.rounds} round(s), "
          f"{os.cpu_count()} cores")
    print(f"{'client':<12} {'KiB/socket':>10} {'handshake us':>13} {'us/message':>11} {'idle CPU %':>11} "
          f"{'vs lean':>8}")
    base = median("lean", "us_per_message")
    for variant in VARIANTS:
        print(f"{variant:<12} {median(variant, 'kib_per_socket'):>10.1f} {median(variant, 'handshake_us'):>13.0f} "
              f"{median(variant, 'us_per_message'):>11.1f} {median(variant, 'idle_cpu_pct'):>11.1f} "
              f"{median(variant, 'us_per_message') / base:>7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10, help="frames sent to every socket")
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    if opts.serve:
        uvloop.run(serve(opts.serve))
    elif opts.client:
        uvloop.run(measure_client(opts.client, opts.port, opts.sockets, opts.messages))
    else:
        run(opts)


if __name__ == "__main__":
    main()

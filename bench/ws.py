"""Benchmark: the realtime gateway against a naive websocket broadcaster, in the same run.

    .venv/bin/python bench/ws.py                  # defaults below; ~5 minutes
    .venv/bin/python bench/ws.py --connections 2000 --fanout 500 --updates 10   # a quick look

The gateway (`sharehub gateway`) runs in its own process; the clients run in this one, on a lean
websocket client (bench/wsclient.py) that stamps every frame on arrival. Not on the `websockets`
library the tests use: its asyncio client costs ~3.5x the CPU per frame (bench/ws_clients.py), and
even its Sans-I/O protocol in the same lean shape (1.3-1.7x) moved this benchmark's fan-out tail
and burst rate towards the client's own cost (numbers in bench/wsclient.py). The baseline is a
minimal aiohttp server (`--serve-baseline`) with the same handshake auth and the same NATS
subscriptions that broadcasts the way most chat tutorials do: for each event, await each
socket's send in turn. Both run on the same embedded stack, one after the other.

What it prints:
1. connections: N idle sockets held by one process; the server's RSS growth per connection.
2. fan-out: one listing with 1 000 (then 4 000) watchers; the owner changes its availability
   over REST `--updates` times; latency from the event's `occurred_at` (stamped by the listing's
   entity when it decides, just before the commit) to arrival at each watcher: p50 / p99.
3. deliveries/s: `--blast-events` events published straight to NATS on `--blast-channels`
   listings with `--blast-watchers` watchers each; deliveries per second from the first publish
   to the last arrival (what one process can push, with the database out of the way).
4. chat: `--pairs` renter/owner pairs; every renter sends over its socket `--chat-rate`
   messages per second for `--chat-secs`; latency from send to arrival at the owner (through
   the room's entity, the commit, the relay and NATS), while `--chat-background` watchers of a
   listing updated twice a second stay connected (held by another process).
Medians are not taken over rounds here (each phase already has thousands of samples); the
machine is shared, so compare the ratio column rather than absolute numbers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import orjson
import psutil
import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.chat import room_id
from bench.booking import _insert_listings, _listing, _server_env, start_server
from bench.common import throwaway_stack
from bench.wsclient import WsClient, connect
from sharehub.config import load_settings
from sharehub.devstack.processes import free_port, stop
from sharehub.platform import build_token_service
from sharehub.progress import Progress
from sharehub.security.keys import generate_key
from sharehub.security.passwords import hash_password
from sharehub.security.tokens import TokenInvalid, TokenService
from storage.db import create_pool
from storage.migrate import migrate

HERE = Path(__file__).resolve()
GATEWAY, BASELINE = "gateway", "baseline"
PASSWORD = "Аренда без забот 2026"  # noqa: S105 - benchmark accounts on a throwaway database
_CONNECT_CONCURRENCY = 200


# ============================================================================ the baseline server


async def serve_baseline(port: int) -> None:
    """Accept /ws with a bearer subprotocol, handle subscribe, and broadcast each NATS event by
    awaiting every watcher's send in turn (one encode per event: the baseline is not made slow
    on purpose, it just has no queues, no writer tasks and no batching)."""
    settings = load_settings()
    tokens = build_token_service(settings)
    assert settings.nats_url
    nc = await nats.connect(settings.nats_url)
    watchers: dict[str, list[web.WebSocketResponse]] = {}

    async def on_event(msg: Any) -> None:
        event = orjson.loads(msg.data)
        channel = f"{event['kind']}:{event['entity_id']}"
        frame = orjson.dumps({"type": "event", "channel": channel, "seq": event.get("seq"),
                              "event": event["type"], "data": event["data"],
                              "occurred_at": event["occurred_at"]}).decode()
        for ws in list(watchers.get(channel, ())):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(frame)

    async def handle(request: web.Request) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        try:
            tokens.verify_access(offered[1] if len(offered) == 2 and offered[0] == "bearer" else "")
        except TokenInvalid:
            raise web.HTTPUnauthorized() from None
        ws = web.WebSocketResponse(protocols=("bearer",), compress=False)
        await ws.prepare(request)
        mine: list[str] = []
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                body = orjson.loads(message.data)
                if body.get("type") == "subscribe":
                    channel = body["channel"]
                    if channel not in watchers:
                        watchers[channel] = []
                        kind, _, entity_id = channel.partition(":")
                        await nc.subscribe(f"{kind}.{entity_id}.>", cb=on_event)
                    watchers[channel].append(ws)
                    mine.append(channel)
                    await ws.send_str(orjson.dumps({"type": "subscribed", "channel": channel}).decode())
        finally:
            for channel in mine:
                with contextlib.suppress(ValueError):
                    watchers[channel].remove(ws)
        return ws

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


# ============================================================================ data


@dataclass
class Person:
    user_id: uuid.UUID
    email: str
    token: str = ""
    auth: dict[str, str] = field(default_factory=dict)


@dataclass
class Data:
    owner: Person
    renters: list[Person]
    watchers: list[Person]
    fanout_listings: dict[str, list[uuid.UUID]]  # by server: one per fan-out size
    blast_listings: dict[str, list[uuid.UUID]]
    chat_listing: uuid.UUID


async def prepare(pool: asyncpg.Pool, tokens: TokenService, opts: argparse.Namespace) -> Data:
    tag = uuid.uuid4().hex[:6]
    owner = Person(uuid.uuid4(), f"owner-{tag}@bench.sharehub.local")
    renters = [Person(uuid.uuid4(), f"renter{i}-{tag}@bench.sharehub.local") for i in range(opts.pairs)]
    watchers = [Person(uuid.uuid4(), f"watcher{i}-{tag}@bench.sharehub.local") for i in range(opts.watcher_users)]
    people = [owner, *renters, *watchers]
    password_hash = hash_password(PASSWORD)
    now = datetime.now(UTC)
    sizes = len(opts.fanout)
    async with pool.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table(
            "users", columns=["id", "email", "display_name", "city", "password_hash", "roles"],
            records=[(p.user_id, p.email, "Bench", "Москва", password_hash,
                      ["user", "owner"] if p is owner else ["user"]) for p in people])
        count = 2 * sizes + 2 * opts.blast_channels + 1
        rows = [_listing(owner.user_id, i, unit="day", quantity=3, now=now) for i in range(count)]
        with Progress("listings", len(rows)) as progress:
            await _insert_listings(conn, rows, progress)
    ids = [row["id"] for row in rows]
    for person in people:  # tokens as a login would issue them (the gateway checks them the same way)
        person.token, _ = tokens.issue_access(person.user_id, uuid.uuid4(), frozenset({"user"}), 0)
        person.auth = {"Authorization": f"Bearer {person.token}"}
    return Data(
        owner=owner, renters=renters, watchers=watchers,
        fanout_listings={GATEWAY: ids[:sizes], BASELINE: ids[sizes:2 * sizes]},
        blast_listings={GATEWAY: ids[2 * sizes:2 * sizes + opts.blast_channels],
                        BASELINE: ids[2 * sizes + opts.blast_channels:2 * sizes + 2 * opts.blast_channels]},
        chat_listing=ids[-1],
    )


# ============================================================================ clients


class Recorder:
    """Frames as they arrived; parsed only after the phase, so parsing never delays a stamp."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, list[bytes]]] = []
        self.count = 0

    def __call__(self, arrived: float, texts: list[bytes]) -> None:
        self.frames.append((arrived, texts))
        self.count += len(texts)

    def messages(self) -> list[tuple[float, dict[str, Any]]]:
        return [(arrived, orjson.loads(text)) for arrived, texts in self.frames for text in texts]

    def clear(self) -> None:
        self.frames.clear()
        self.count = 0


async def open_sockets(port: int, tokens: list[str], count: int, recorder: Recorder, *,
                       channels: Callable[[int], list[str]] | None = None, label: str = "sockets") -> list[WsClient]:
    """`count` connections (tokens used round robin), each subscribed to `channels(i)`; returns
    when every subscription is confirmed."""
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)
    clients: list[WsClient] = []
    expected = 0

    async def one(index: int, progress: Progress) -> None:
        nonlocal expected
        async with gate:
            client = await connect("127.0.0.1", port, tokens[index % len(tokens)], recorder)
        clients.append(client)
        for channel in channels(index) if channels else []:
            expected += 1
            client.send({"type": "subscribe", "channel": channel})
        progress.advance()

    with Progress(label, count) as progress:
        await asyncio.gather(*(one(i, progress) for i in range(count)))
    await _until(lambda: sum(1 for _, m in recorder.messages() if m.get("type") == "subscribed") >= expected,
                 f"{expected} subscriptions")
    recorder.clear()
    return clients


async def _until(check: Callable[[], bool], what: str, limit_secs: float = 120.0) -> None:
    deadline = time.monotonic() + limit_secs
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {limit_secs:.0f} s for {what}")
        await asyncio.sleep(0.2)


def _same(channels: list[str]) -> Callable[[int], list[str]]:
    return lambda _: channels


def _round_robin(channels: list[str]) -> Callable[[int], list[str]]:
    return lambda index: [channels[index % len(channels)]]


def _received(recorder: Recorder, count: int) -> Callable[[], bool]:
    return lambda: recorder.count >= count


def close_all(clients: list[WsClient]) -> None:
    for client in clients:
        client.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def hold_watchers(port: int, tokens: list[str], count: int, channel: str) -> asyncio.subprocess.Process:
    """Another process holding `count` sockets subscribed to `channel` until its stdin closes."""
    spec = orjson.dumps({"port": port, "tokens": tokens, "count": count, "channel": channel})
    proc = await asyncio.create_subprocess_exec(sys.executable, str(HERE), "--hold-watchers",
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(spec + b"\n")
    await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), 300)
    if line.strip() != b"ready":
        raise RuntimeError(f"the watcher process failed: {line!r}")
    return proc


async def run_holder() -> None:
    """`--hold-watchers`: read the spec from stdin, hold the sockets, say "ready", wait for EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)  # the spec line holds every watcher token
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    spec = orjson.loads(await reader.readline())
    clients = await open_sockets(spec["port"], spec["tokens"], spec["count"], Recorder(),
                                 channels=_same([spec["channel"]]), label="background watchers")
    print("ready", flush=True)
    await reader.read()
    close_all(clients)


# ============================================================================ phases


@dataclass
class Servers:
    ports: dict[str, int]
    pids: dict[str, int]
    base: str  # the gateway's REST address (updates always go through the product)


async def phase_connections(servers: Servers, data: Data, opts: argparse.Namespace) -> dict[str, dict[str, float]]:
    results = {}
    tokens = [p.token for p in data.watchers]
    for name in (GATEWAY, BASELINE):
        gc.collect()
        await asyncio.sleep(1.0)
        before = rss_mib(servers.pids[name])
        started = time.perf_counter()
        clients = await open_sockets(servers.ports[name], tokens, opts.connections, Recorder(),
                                     label=f"{name}: connections")
        elapsed = time.perf_counter() - started
        await asyncio.sleep(3.0)  # let the server settle (presence writes, heartbeats scheduled)
        after = rss_mib(servers.pids[name])
        alive = sum(1 for c in clients if not c.closed.done())
        results[name] = {"held": alive, "kib_per_conn": (after - before) * 1024 / max(alive, 1),
                         "rss_mib": after, "accept_per_sec": opts.connections / elapsed}
        close_all(clients)
        await asyncio.sleep(2.0)
    return results


async def fanout_histogram(session: aiohttp.ClientSession, base: str) -> dict[float, float]:
    """The gateway's own `ws_fanout_latency_seconds` buckets (cumulative counts by upper bound):
    from an event's occurred_at until its frame was written to the last local watcher."""
    async with session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("ws_fanout_latency_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (ms) of the bucket holding quantile q of the observations in between."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0.0
    for bound, cumulative in counts:
        if total and cumulative >= q * total:
            return bound * 1000
    return float("nan")


async def _set_blocked(session: aiohttp.ClientSession, base: str, owner: Person, listing: uuid.UUID, i: int) -> None:
    day = (datetime.now(UTC) + timedelta(days=200 + i % 50)).date().isoformat()
    async with session.put(f"{base}/api/v1/listings/{listing}/blocked-periods", headers=owner.auth,
                           json={"periods": [{"start": day, "end": day}]}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"blocking a day answered {resp.status}: {await resp.text()}")


async def phase_fanout(servers: Servers, data: Data, opts: argparse.Namespace, session: aiohttp.ClientSession
                       ) -> dict[tuple[str, int], dict[str, float]]:
    results = {}
    tokens = [p.token for p in data.watchers]
    for size_index, size in enumerate(opts.fanout):
        for name in (GATEWAY, BASELINE):
            listing = data.fanout_listings[name][size_index]
            recorder = Recorder()
            clients = await open_sockets(servers.ports[name], tokens, size, recorder,
                                         channels=_same([f"listing:{listing}"]),
                                         label=f"{name}: {size} watchers")
            await asyncio.sleep(1.0)
            histogram_before = await fanout_histogram(session, servers.base)
            for i in range(opts.updates):
                await _set_blocked(session, servers.base, data.owner, listing, i)
                await asyncio.sleep(opts.update_gap)
            if opts.strict:
                await _until(_received(recorder, size * opts.updates), "the last deliveries", 20.0)
            else:
                await asyncio.sleep(2.0)
            latencies = [(arrived - datetime.fromisoformat(m["occurred_at"]).timestamp()) * 1000
                         for arrived, m in recorder.messages() if m.get("type") == "event"]
            results[(name, size)] = {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
                                     "delivered": len(latencies), "expected": size * opts.updates}
            if name == GATEWAY:
                histogram_after = await fanout_histogram(session, servers.base)
                results[(name, size)]["server_p50_ms"] = bucket_quantile(histogram_before, histogram_after, 0.5)
                results[(name, size)]["server_p99_ms"] = bucket_quantile(histogram_before, histogram_after, 0.99)
            close_all(clients)
            await asyncio.sleep(2.0)
    return results


async def phase_blast(servers: Servers, data: Data, opts: argparse.Namespace, nats_url: str
                      ) -> dict[str, dict[str, float]]:
    results = {}
    tokens = [p.token for p in data.watchers]
    nc = await nats.connect(nats_url)
    try:
        for name in (GATEWAY, BASELINE):
            listings = data.blast_listings[name]
            recorder = Recorder()
            clients = await open_sockets(
                servers.ports[name], tokens, opts.blast_watchers * len(listings), recorder,
                channels=_round_robin([f"listing:{listing}" for listing in listings]),
                label=f"{name}: blast watchers")
            await asyncio.sleep(1.0)
            per_channel = max(1, opts.blast_events // len(listings))
            expected = per_channel * len(listings) * opts.blast_watchers
            started = time.time()
            for seq in range(1, per_channel + 1):
                for listing in listings:
                    # The shape the relay publishes; seqs continue the channel's (empty) history.
                    event = {"event_id": str(uuid.uuid4()), "type": "availability_changed", "kind": "listing",
                             "entity_id": str(listing), "version": seq, "occurred_at": datetime.now(UTC).isoformat(),
                             "data": {"change": "held", "units": 1}, "seq": seq, "epoch": ""}
                    await nc.publish(f"listing.{listing}.availability_changed", orjson.dumps(event))
            await nc.flush()
            with contextlib.suppress(TimeoutError):
                await _until(_received(recorder, expected), "the blast", 60.0)
            last = max((arrived for arrived, _ in recorder.frames), default=time.time())
            delivered = recorder.count
            closed = sum(1 for c in clients if c.closed.done())
            results[name] = {"deliveries_per_sec": delivered / max(last - started, 1e-6), "delivered": delivered,
                             "expected": expected, "closed": closed, "secs": last - started}
            close_all(clients)
            await asyncio.sleep(2.0)
    finally:
        await nc.close()
    return results


async def phase_chat(servers: Servers, data: Data, opts: argparse.Namespace, session: aiohttp.ClientSession
                     ) -> dict[str, float]:
    rooms = []
    for renter in data.renters:
        async with session.post(f"{servers.base}/api/v1/chats", headers=renter.auth,
                                json={"listing_id": str(data.chat_listing)}) as resp:
            assert resp.status in {200, 201}, await resp.text()
            rooms.append(str((await resp.json())["id"]))
    assert rooms == [str(room_id(data.chat_listing, r.user_id)) for r in data.renters]
    port = servers.ports[GATEWAY]
    owner_recorder, renter_recorder = Recorder(), Recorder()
    owner_socket = (await open_sockets(port, [data.owner.token], 1, owner_recorder,
                                       channels=_same([f"chat:{r}" for r in rooms]), label="chat: owner"))[0]
    renter_sockets = [
        (await open_sockets(port, [renter.token], 1, renter_recorder, channels=_same([f"chat:{room}"]),
                            label="chat: renter"))[0]
        for renter, room in zip(data.renters, rooms, strict=True)
    ]
    # Background load: the fan-out watchers of the largest size stay connected and keep getting
    # updates - held by another process, so that reading their frames does not delay this one's.
    listing = data.fanout_listings[GATEWAY][-1]
    holder = await hold_watchers(port, [p.token for p in data.watchers], opts.chat_background, f"listing:{listing}")
    stop_load = asyncio.Event()

    async def background_updates() -> None:
        i = 1000
        while not stop_load.is_set():
            await _set_blocked(session, servers.base, data.owner, listing, i)
            i += 1
            await asyncio.sleep(0.5)

    async def talk(socket: WsClient, room: str, index: int) -> None:
        await asyncio.sleep(index / len(rooms) / opts.chat_rate)  # spread the senders
        deadline = time.monotonic() + opts.chat_secs
        n = 0
        while time.monotonic() < deadline:
            n += 1
            socket.send({"type": "send", "id": f"{index}-{n}", "channel": f"chat:{room}",
                         "client_msg_id": f"bench-{index}-{n}", "text": f"{time.time():.6f}"})
            await asyncio.sleep(1 / opts.chat_rate)

    loader = asyncio.create_task(background_updates())
    await asyncio.gather(*(talk(s, r, i) for i, (s, r) in enumerate(zip(renter_sockets, rooms, strict=True))))
    await asyncio.sleep(2.0)
    stop_load.set()
    await loader
    latencies, errors = [], 0
    for arrived, message in owner_recorder.messages():
        if message.get("type") == "event" and message.get("event") == "message_sent":
            latencies.append((arrived - float(message["data"]["message"]["body"])) * 1000)
    for _, message in renter_recorder.messages():
        errors += message.get("type") == "error"
    sent = len(rooms) * opts.chat_rate * opts.chat_secs
    close_all([owner_socket, *renter_sockets])
    assert holder.stdin is not None
    holder.stdin.close()
    await holder.wait()
    return {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "delivered": len(latencies), "sent_approx": sent, "errors": errors}


# ============================================================================ main


def _print(connections: dict[str, dict[str, float]], fanout: dict[tuple[str, int], dict[str, float]],
           blast: dict[str, dict[str, float]], chat: dict[str, float], opts: argparse.Namespace) -> None:
    print(f"\n1. idle connections held by one process ({opts.connections} opened)")
    print(f"{'server':<10} {'held':>7} {'KiB/conn':>9} {'RSS MiB':>8} {'accepts/s':>10}")
    for name, r in connections.items():
        print(f"{name:<10} {r['held']:>7.0f} {r['kib_per_conn']:>9.1f} {r['rss_mib']:>8.0f} "
              f"{r['accept_per_sec']:>10.0f}")
    print(f"\n2. fan-out of one listing update, commit -> client ({opts.updates} updates each)")
    print(f"{'server':<10} {'watchers':>8} {'p50 ms':>8} {'p99 ms':>8} {'delivered':>10} {'p99 vs base':>12}")
    for (name, size), r in fanout.items():
        ratio = fanout[(BASELINE, size)]["p99_ms"] / r["p99_ms"] if r["p99_ms"] else float("nan")
        print(f"{name:<10} {size:>8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['delivered']:>5.0f}/{r['expected']:<5.0f} {ratio:>11.2f}x")
    for (_, size), r in fanout.items():
        if "server_p50_ms" in r:
            print(f"  the gateway's own view, commit -> frame written to its last watcher, {size} watchers: "
                  f"p50 <= {r['server_p50_ms']:.1f} ms, p99 <= {r['server_p99_ms']:.1f} ms (histogram bucket bounds)")
    print(f"\n3. deliveries per second, one process ({opts.blast_events} events x {opts.blast_watchers} watchers)")
    print(f"{'server':<10} {'deliv/s':>10} {'delivered':>16} {'closed':>7} {'vs base':>8}")
    for name, r in blast.items():
        ratio = r["deliveries_per_sec"] / blast[BASELINE]["deliveries_per_sec"]
        print(f"{name:<10} {r['deliveries_per_sec']:>10.0f} {r['delivered']:>8.0f}/{r['expected']:<7.0f} "
              f"{r['closed']:>7.0f} {ratio:>7.2f}x")
    print(f"\n4. chat send -> other party, {opts.pairs} pairs x {opts.chat_rate}/s for {opts.chat_secs}s, "
          f"{opts.chat_background} watchers (another process) getting updates meanwhile")
    print(f"p50 {chat['p50_ms']:.1f} ms, p99 {chat['p99_ms']:.1f} ms, delivered {chat['delivered']:.0f} of "
          f"~{chat['sent_approx']:.0f}, errors {chat['errors']:.0f}")


async def run(opts: argparse.Namespace) -> None:
    with throwaway_stack(with_ray=True) as urls, tempfile.TemporaryDirectory() as tmp:
        await migrate(urls.database_url, load_settings().migrations_dir)
        keys = Path(tmp) / "keys"
        generate_key(keys)
        env = _server_env(urls, keys, 20)
        env["SHAREHUB_WS_SEND_QUEUE"] = str(opts.send_queue)
        # A few dozen users hold thousands of sockets here; the per-user cap is not what is measured.
        env["SHAREHUB_WS_SOCKETS_PER_USER"] = "1000000"
        os.environ.update({"SHAREHUB_JWT_KEYS_DIR": str(keys)})
        tokens = build_token_service(load_settings())
        pool = await create_pool(urls.database_url, max_size=4)
        data = await prepare(pool, tokens, opts)
        ports = {GATEWAY: free_port(), BASELINE: free_port()}
        gateway = await start_server(GATEWAY, [sys.executable, "-m", "sharehub", "gateway", "--port",
                                               str(ports[GATEWAY])],
                                     port=ports[GATEWAY], env=env, log=Path(tmp) / "gateway.log", processes=1)
        baseline = await start_server(BASELINE, [sys.executable, str(HERE), "--serve-baseline", str(ports[BASELINE])],
                                      port=ports[BASELINE], env=env, log=Path(tmp) / "baseline.log", processes=1)
        servers = Servers(ports, {GATEWAY: gateway.procs[0].pid, BASELINE: baseline.procs[0].pid}, gateway.base)
        try:
            async with aiohttp.ClientSession() as session:
                # The gateway's first entity command sets up its Ray client (seconds): not in a sample.
                await _set_blocked(session, servers.base, data.owner, data.chat_listing, 0)
                connections = await phase_connections(servers, data, opts)
                fanout = await phase_fanout(servers, data, opts, session)
                blast = await phase_blast(servers, data, opts, urls.nats_url)
                chat = await phase_chat(servers, data, opts, session)
            _print(connections, fanout, blast, chat, opts)
            for server in (gateway, baseline):
                if any(p.poll() is not None for p in server.procs):
                    print(f"{server.name} died:\n{server.log.read_text()[-3000:]}", file=sys.stderr)
        finally:
            for server in (gateway, baseline):
                for proc in server.procs:
                    stop(proc)
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--hold-watchers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--fanout", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 4000])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--update-gap", type=float, default=0.3, help="seconds between fan-out updates")
    parser.add_argument("--blast-channels", type=int, default=4)
    parser.add_argument("--blast-watchers", type=int, default=500, help="watchers per blast channel")
    parser.add_argument("--blast-events", type=int, default=400, help="events in all, spread over the channels")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--chat-rate", type=float, default=2.0, help="messages per second per renter")
    parser.add_argument("--chat-secs", type=float, default=10.0)
    parser.add_argument("--chat-background", type=int, default=1000,
                        help="watchers of a listing updated every 0.5 s during the chat phase")
    # The gateway lets one user hold SHAREHUB_WS_SOCKETS_PER_USER sockets (20): 10 000 sockets
    # need at least 500 users behind them.
    parser.add_argument("--watcher-users", type=int, default=1000, help="distinct users behind the watchers")
    parser.add_argument("--send-queue", type=int, default=1024, help="the gateway's per-connection queue")
    parser.add_argument("--strict", action="store_true", help="wait for every fan-out delivery")
    opts = parser.parse_args()
    if opts.serve_baseline:
        uvloop.run(serve_baseline(opts.serve_baseline))
        return
    if opts.hold_watchers:
        uvloop.run(run_holder())
        return
    uvloop.run(run(opts))


if __name__ == "__main__":
    main()

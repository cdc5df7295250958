"""The websocket gateway's pure parts: framing, the message budget, client message parsing, and
a channel's exact delivery (duplicates, gaps, purged history, epoch resets, replays)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import orjson
import pytest

from gateway.realtime import protocol
from gateway.realtime.access import Audience, for_audience
from gateway.realtime.channel import Channel
from gateway.realtime.connection import CLOSE_SLOW_CONSUMER, Connection
from gateway.realtime.limits import ABUSE_STRIKES, BURST, RATE_PER_SEC, MessageBudget, Verdict
from gateway.realtime.protocol import ChannelRef
from sharehub.errors import ApiError
from sharehub.security.tokens import AccessClaims
from storage.channels import Replay

USER = uuid.uuid4()
CLAIMS = AccessClaims(user_id=USER, session_id=uuid.uuid4(), roles=frozenset(), auth_epoch=1, expires_at=2**40)

# ----------------------------------------------------------------------------------- framing


def test_frames_join_queued_messages_with_newlines_in_order() -> None:
    messages = [orjson.dumps({"n": i}) for i in range(5)]
    assert protocol.frames(messages) == [b"\n".join(messages)]
    assert protocol.frames([messages[0]]) == [messages[0]]
    assert protocol.frames([]) == []


def test_frames_stay_under_the_limit_and_a_large_message_travels_alone() -> None:
    small = [b"x" * 10 for _ in range(10)]
    out = protocol.frames(small, max_bytes=32)
    assert all(len(frame) <= 32 for frame in out)
    assert b"\n".join(out).split(b"\n") == small  # nothing lost, nothing reordered
    big = b"y" * 100
    out = protocol.frames([b"a", big, b"b"], max_bytes=32)
    assert out == [b"a", big, b"b"]


# ------------------------------------------------------------------------------------ budget


def test_budget_allows_a_burst_then_the_rate_then_calls_sustained_excess_abuse() -> None:
    budget = MessageBudget(now=0.0)
    assert [budget.take(0.0) for _ in range(int(BURST))] == [Verdict.OK] * int(BURST)
    assert budget.take(0.0) is Verdict.LIMITED
    # A second later the bucket has refilled by the rate.
    assert sum(budget.take(1.0) is Verdict.OK for _ in range(int(RATE_PER_SEC) + 5)) == int(RATE_PER_SEC)
    verdicts = [budget.take(1.0) for _ in range(int(ABUSE_STRIKES) + 5)]
    assert verdicts[-1] is Verdict.ABUSIVE


def test_strikes_decay_so_an_occasional_burst_is_never_abuse() -> None:
    budget = MessageBudget(now=0.0)
    now = 0.0
    for _ in range(200):  # a burst of BURST + 5 every 10 s, forever
        verdicts = [budget.take(now) for _ in range(int(BURST) + 5)]
        assert Verdict.ABUSIVE not in verdicts
        now += 10.0


# --------------------------------------------------------------------------- client messages


def test_client_messages_parse_and_channels_are_canonical() -> None:
    listing = uuid.uuid4()
    message = protocol.validate(protocol.decode(orjson.dumps(
        {"type": "subscribe", "channel": f"listing:{str(listing).upper()}", "since": 3, "epoch": "ab12cd34",
         "id": "s1"})))
    assert isinstance(message, protocol.Subscribe) and message.since == 3 and message.id == "s1"
    ref = protocol.parse_channel(message.channel, USER)
    assert ref == ChannelRef("listing", str(listing), f"listing:{listing}")
    assert protocol.parse_channel("user:me", USER) == ChannelRef("user", str(USER), "user:me")
    assert protocol.parse_channel(f"user:{USER}", USER) is None  # only one's own, and only as "me"


@pytest.mark.parametrize(("raw", "code"), [
    (b"not json", "invalid_message"),
    (b"[1, 2]", "invalid_message"),
    (b'{"type": "shout"}', "invalid_message"),
    (b'{"channel": "user:me"}', "invalid_message"),
    (b'{"type": "subscribe"}', "validation_failed"),
    (b'{"type": "subscribe", "channel": "user:someone"}', "validation_failed"),
    (b'{"type": "subscribe", "channel": "user:me", "since": -1}', "validation_failed"),
    (b'{"type": "subscribe", "channel": "user:me", "since": "3"}', "validation_failed"),
    (b'{"type": "subscribe", "channel": "user:me", "extra": 1}', "validation_failed"),
    (b'{"type": "ping", "id": 7}', "validation_failed"),
    (b'{"type": "send", "channel": "user:me", "client_msg_id": "a", "text": "hi"}', "validation_failed"),
    (b'{"type": "typing", "channel": "listing:00000000-0000-0000-0000-000000000000"}', "validation_failed"),
])
def test_bad_client_messages_are_refused_with_rest_codes(raw: bytes, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        protocol.validate(protocol.decode(raw))
    assert refused.value.code == code
    if code == "validation_failed":
        assert refused.value.extra["errors"]


def test_an_error_echoes_the_id_of_the_message_it_answers() -> None:
    obj = protocol.decode(b'{"type": "subscribe", "id": "x1"}')
    assert protocol.message_id(obj) == "x1"
    assert protocol.message_id({"id": "x" * 65}) is None
    error = orjson.loads(protocol.error("not_found", "No such chat.", "x1"))
    assert error == {"type": "error", "code": "not_found", "detail": "No such chat.", "id": "x1"}


def test_the_public_sees_only_public_listing_events_without_the_rental() -> None:
    held = {"type": "availability_changed", "data": {"change": "held", "rental_id": "r", "units": 1}}
    assert for_audience(held, Audience.PUBLIC) == {"type": "availability_changed",
                                                    "data": {"change": "held", "units": 1}}
    assert for_audience(held, Audience.FULL) is held
    assert for_audience({"type": "revision_submitted", "data": {}}, Audience.PUBLIC) is None
    assert for_audience({"type": "rejected", "data": {"reason": "x"}}, Audience.PUBLIC) is None


# ----------------------------------------------------------------------------- the sequencer


class FakeHistory:
    """An outbox in memory: events 1..n of one channel, some of them purged."""

    def __init__(self, epoch: str = "ep1") -> None:
        self.epoch = epoch
        self.events: dict[int, dict[str, Any]] = {}
        self.head_seq = 0

    def commit(self, event_type: str = "updated", **data: Any) -> dict[str, Any]:
        self.head_seq += 1
        payload = {"event_id": str(uuid.uuid4()), "type": event_type, "kind": "listing", "entity_id": "l",
                   "version": self.head_seq, "occurred_at": "2026-11-27T10:00:00+00:00", "data": data,
                   "seq": self.head_seq, "epoch": self.epoch}
        self.events[self.head_seq] = payload
        return payload

    async def head(self) -> tuple[str, int]:
        return self.epoch, self.head_seq

    async def between(self, after: int, up_to: int) -> list[dict[str, Any]]:
        return [self.events[s] for s in range(after + 1, up_to + 1) if s in self.events]

    async def replay(self, since: int, epoch: str | None) -> Replay:
        if (epoch and epoch != self.epoch) or since > self.head_seq:
            return Replay(self.epoch, self.head_seq, complete=False)
        events = await self.between(since, self.head_seq)
        return Replay(self.epoch, self.head_seq, events, complete=len(events) == self.head_seq - since)


class FakeSocket:
    def __init__(self, *, stuck: bool = False) -> None:
        self.frames: list[bytes] = []
        self.stuck = stuck
        self.closed_with: int | None = None

    async def send_frame(self, frame: bytes, _opcode: Any) -> None:
        if self.stuck:
            await asyncio.Event().wait()  # a client that never reads
        self.frames.append(frame)

    async def close(self, *, code: int, message: bytes) -> bool:
        self.closed_with = code
        return True

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for frame in self.frames for line in frame.split(b"\n")]


def _watcher(limit: int = 1024, *, stuck: bool = False) -> tuple[Connection, FakeSocket]:
    socket = FakeSocket(stuck=stuck)
    return Connection(cast(Any, socket), None, CLAIMS, limit), socket


class FakeMsg:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.data = orjson.dumps(payload)
        self.subject = f"listing.l.{payload['type']}"


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _seqs(socket: FakeSocket) -> list[int]:
    return [m["seq"] for m in socket.messages() if m["type"] == "event"]


async def test_a_channel_drops_duplicates_and_fills_gaps_from_the_outbox_in_order() -> None:
    history = FakeHistory()
    history.commit()
    channel = Channel(ChannelRef("listing", "l", "listing:l"), history)
    conn, socket = _watcher()
    await channel.join(conn, Audience.FULL, None, None, "s")
    e2, e3, e4 = history.commit(), history.commit(), history.commit()
    await channel.on_event(cast(Any, FakeMsg(e2)))
    await channel.on_event(cast(Any, FakeMsg(e2)))  # duplicate
    await channel.on_event(cast(Any, FakeMsg(e4)))  # e3 lost on the way: read from the outbox
    await channel.on_event(cast(Any, FakeMsg(e3)))  # arrives late: already delivered
    await _settle()
    assert socket.messages()[0] == {"type": "subscribed", "channel": "listing:l", "epoch": "ep1", "seq": 1, "id": "s"}
    assert _seqs(socket) == [2, 3, 4]


async def test_a_gap_the_outbox_no_longer_has_becomes_a_resync() -> None:
    history = FakeHistory()
    channel = Channel(ChannelRef("listing", "l", "listing:l"), history)
    conn, socket = _watcher()
    await channel.join(conn, Audience.FULL, None, None, None)
    history.commit()
    history.commit()
    e3 = history.commit()
    del history.events[1], history.events[2]  # purged
    await channel.on_event(cast(Any, FakeMsg(e3)))
    await _settle()
    kinds = [(m["type"], m["seq"]) for m in socket.messages()]
    assert kinds == [("subscribed", 0), ("resync", 2), ("event", 3)]


async def test_join_with_since_replays_exactly_what_was_missed_then_continues_live() -> None:
    history = FakeHistory()
    for _ in range(5):
        history.commit()
    channel = Channel(ChannelRef("listing", "l", "listing:l"), history)
    first, _ = _watcher()
    await channel.join(first, Audience.FULL, None, None, None)
    # Two more are committed; NATS has not brought them when the second watcher joins.
    history.commit()
    e7 = history.commit()
    late, late_socket = _watcher()
    await channel.join(late, Audience.FULL, 3, "ep1", None)
    await channel.on_event(cast(Any, FakeMsg(e7)))  # the live copy: a duplicate by now
    e8 = history.commit()
    await channel.on_event(cast(Any, FakeMsg(e8)))
    await _settle()
    assert late_socket.messages()[0]["seq"] == 7
    assert _seqs(late_socket) == [4, 5, 6, 7, 8]


async def test_join_with_a_since_it_cannot_replay_answers_resync() -> None:
    history = FakeHistory()
    history.commit()
    channel = Channel(ChannelRef("listing", "l", "listing:l"), history)
    for since, epoch in ((5, None), (0, "other")):
        conn, socket = _watcher()
        await channel.join(conn, Audience.FULL, since, epoch, "x")
        await _settle()
        assert [m["type"] for m in socket.messages()] == ["subscribed", "resync"]
        assert socket.messages()[1] == {"type": "resync", "channel": "listing:l", "epoch": "ep1", "seq": 1, "id": "x"}


async def test_a_new_epoch_resyncs_every_watcher() -> None:
    history = FakeHistory()
    history.commit()
    channel = Channel(ChannelRef("listing", "l", "listing:l"), history)
    conn, socket = _watcher()
    await channel.join(conn, Audience.FULL, None, None, None)
    history.epoch, history.events, history.head_seq = "ep2", {}, 0  # the history was reset
    fresh = history.commit()
    await channel.on_event(cast(Any, FakeMsg(fresh)))
    await _settle()
    assert socket.messages()[-1] == {"type": "resync", "channel": "listing:l", "epoch": "ep2", "seq": 1}


async def test_public_watchers_get_filtered_events_encoded_once() -> None:
    history = FakeHistory()
    channel = Channel(ChannelRef("listing", "l", "listing:l"), history)
    owner, owner_socket = _watcher()
    public = [_watcher() for _ in range(3)]
    await channel.join(owner, Audience.FULL, None, None, None)
    for conn, _ in public:
        await channel.join(conn, Audience.PUBLIC, None, None, None)
    for payload in (history.commit("revision_submitted"), history.commit("availability_changed", rental_id="r")):
        await channel.on_event(cast(Any, FakeMsg(payload)))
    await _settle()
    assert _seqs(owner_socket) == [1, 2]
    for conn, socket in public:
        assert _seqs(socket) == [2]
        assert [m["data"] for m in socket.messages() if m["type"] == "event"] == [{}]
        assert conn.queue is None  # written out


async def test_a_watcher_that_never_reads_is_closed_as_a_slow_consumer() -> None:
    slow, slow_socket = _watcher(limit=4, stuck=True)
    fine, fine_socket = _watcher(limit=4)
    history = FakeHistory()
    channel = Channel(ChannelRef("listing", "l", "listing:l"), history)
    await channel.join(slow, Audience.FULL, None, None, None)
    await channel.join(fine, Audience.FULL, None, None, None)
    for _ in range(10):
        await channel.on_event(cast(Any, FakeMsg(history.commit())))
        await _settle()
    assert slow.closing and slow_socket.closed_with == CLOSE_SLOW_CONSUMER
    assert _seqs(fine_socket) == list(range(1, 11))

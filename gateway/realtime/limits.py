"""How many messages one socket may send: a token bucket, and a record of how often it ran dry.

A client over the rate gets an `error` (rate_limited) per refused message; one that keeps
sending far over it is abusive and is disconnected (close code 4029). Strikes decay, so a client
that occasionally bursts is never disconnected, one that sustains twice the rate soon is."""

from __future__ import annotations

from enum import Enum

RATE_PER_SEC = 20.0
# A reconnecting client re-subscribes to all its channels (up to 100) at once.
BURST = 120.0
# Refused messages tolerated, decaying by one per second, before the socket is closed.
ABUSE_STRIKES = 40.0
STRIKE_DECAY_PER_SEC = 1.0


class Verdict(Enum):
    OK = "ok"
    LIMITED = "limited"
    ABUSIVE = "abusive"


class MessageBudget:
    __slots__ = ("stamp", "strikes", "tokens")

    def __init__(self, now: float) -> None:
        self.tokens = BURST
        self.stamp = now
        self.strikes = 0.0

    def take(self, now: float) -> Verdict:
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.tokens = min(BURST, self.tokens + elapsed * RATE_PER_SEC)
        if self.strikes:
            self.strikes = max(0.0, self.strikes - elapsed * STRIKE_DECAY_PER_SEC)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Verdict.OK
        self.strikes += 1.0
        return Verdict.ABUSIVE if self.strikes > ABUSE_STRIKES else Verdict.LIMITED

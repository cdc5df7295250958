"""How a failing durable timer is retried, and when it is given up on (dead-lettered).

A timer fires as an ordinary command. When that command fails, the timer stays in
`entity_timers` and is tried again later: the n-th failure moves its next try to
`now + min(max_backoff, backoff * 2**(n-1))`, and the `max_attempts`-th marks it `dead` - never
fired again until an admin re-arms it (`POST /api/v1/admin/timers/{timer_id}/retry`) once the
cause is fixed. Without this, a failing timer re-fired on every poll, and 100 of them (the poll's
batch) hid every timer due after them.

An unavailable runtime or storage (a 503) is not the timer's fault: it is tried again after
`outage_delay_secs` without spending an attempt, so an outage never dead-letters healthy timers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from actors.commands import Result


@dataclass(frozen=True)
class TimerPolicy:
    # Defaults: tries at +5, 10, 20, 40, 80, 160 and 320 s after the first failure, dead at the
    # 8th (~10.5 min). Rental deadlines (expiry, overdue, completion) tolerate minutes, and that
    # span rides out what passes by itself (a version conflict, a restart during a deploy, a
    # dependency flapping for a few minutes), while a bug - which fails every time - becomes a
    # dead timer on the dashboard within minutes instead of retrying silently for hours. The cap
    # only matters if max_attempts is raised.
    backoff_secs: float = 5.0
    max_backoff_secs: float = 600.0
    max_attempts: int = 8
    # A 503 (storage down, shard starting): outages usually end within seconds, and a poll that
    # meets one retries each timer at most this often.
    outage_delay_secs: float = 5.0

    def __post_init__(self) -> None:
        if self.backoff_secs <= 0 or self.max_backoff_secs < self.backoff_secs or self.outage_delay_secs <= 0:
            raise ValueError("timer backoff must be positive and max_backoff_secs >= backoff_secs")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


class TimerOutcome(Enum):
    DONE = "done"  # the command succeeded or the entity refused it: the timer is spent
    ELSEWHERE = "elsewhere"  # the shard has a newer owner, which fires the timer itself
    OUTAGE = "outage"  # the runtime or storage is unavailable: try later, no attempt spent
    FAILED = "failed"  # the command itself failed: one attempt spent


def timer_outcome(result: Result) -> TimerOutcome:
    """Classify a firing's result. Every 503 is infrastructure (whatever its code: storage,
    database, shard starting), so outage handling does not depend on the exact codes. A refusal
    (4xx) consumes the timer in the same step, so recording it as a failure finds no row."""
    if result.ok:
        return TimerOutcome.DONE
    if result.status == 503:
        return TimerOutcome.ELSEWHERE if result.code == "shard_moved" else TimerOutcome.OUTAGE
    return TimerOutcome.FAILED

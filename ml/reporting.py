"""Where training shows its progress: a bar on the console, or - from a Ray job, whose output is
another process's - events through a Ray queue that the `sharehub train` driver draws."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from sharehub.progress import Progress


class ConsoleReporter:
    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self._bar: Progress | None = None

    def start(self, label: str, total: int) -> None:
        self.finish()
        self._bar = Progress(label, total, stream=self.stream)

    def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(count)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def note(self, text: str) -> None:
        self.finish()
        print(text, file=self.stream, flush=True)

    def replay(self, event: tuple[Any, ...]) -> None:
        """Draw an event a QueueReporter sent."""
        getattr(self, event[0])(*event[1:])


class QueueReporter:
    """Sends each call as an event to a `ray.util.queue.Queue`; advances are coalesced per 1 %,
    so a 400-round training sends tens of events, not hundreds."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self._pending = 0
        self._step = 1

    def start(self, label: str, total: int) -> None:
        self._step = max(1, total // 100)
        self._pending = 0
        self.queue.put(("start", label, total))

    def advance(self, count: int = 1) -> None:
        self._pending += count
        if self._pending >= self._step:
            self.queue.put(("advance", self._pending))
            self._pending = 0

    def finish(self) -> None:
        if self._pending:
            self.queue.put(("advance", self._pending))
            self._pending = 0
        self.queue.put(("finish",))

    def note(self, text: str) -> None:
        self.queue.put(("note", text))

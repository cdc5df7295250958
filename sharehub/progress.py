"""A small progress bar for long work (seeding, reindexing, training) on stderr.

On a terminal it redraws one line; in logs (CI) it prints a line every 10 %, so long jobs show
they are alive without flooding the output."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, *, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.started = time.monotonic()
        self._tty = stream.isatty()
        self._last_draw = 0.0
        self._last_decile = -1
        self._drawn = -1

    def advance(self, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        now = time.monotonic()
        decile = self.done * 10 // self.total
        if self._tty and now - self._last_draw >= 0.1:
            self._draw(end="\r")
            self._last_draw = now
        elif not self._tty and decile != self._last_decile:
            self._draw(end="\n")
        self._last_decile = decile

    def _draw(self, *, end: str) -> None:
        self._drawn = self.done
        elapsed = max(time.monotonic() - self.started, 1e-9)
        filled = int(30 * self.done / self.total)
        bar = "#" * filled + "." * (30 - filled)
        rate = self.done / elapsed
        self.stream.write(f"{self.label:<12} [{bar}] {self.done * 100 // self.total:3d}% "
                          f"{self.done}/{self.total} {rate:,.0f}/s{end}")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.done = self.total
            if self._tty or self._drawn != self.total:
                self._draw(end="\n")

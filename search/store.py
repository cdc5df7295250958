"""Where a replica keeps its index on disk, and which directory is the live one.

`<data dir>/current.json` names the live index directory and the stream it follows; a build
writes a new `index-<time>` directory and `switch` points `current.json` at it atomically
(write aside, rename), so a crash mid-build leaves the old index live and the half-built one is
swept away at the next start."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import orjson

_POINTER = "current.json"


class IndexStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)

    def _pointer(self) -> dict[str, str] | None:
        try:
            data = orjson.loads((self.data_dir / _POINTER).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def current(self, stream_id: str) -> Path | None:
        """The live index directory if it exists and follows this stream; sweeps the others."""
        pointer = self._pointer()
        live = self.data_dir / pointer["index"] if pointer else None
        self._sweep(keep=live)
        if live is None or pointer is None or pointer.get("stream") != stream_id or not live.is_dir():
            return None
        return live

    def new_path(self) -> Path:
        return self.data_dir / f"index-{time.time_ns()}"

    def switch(self, path: Path, stream_id: str) -> None:
        staging = self.data_dir / f"{_POINTER}.tmp"
        staging.write_bytes(orjson.dumps({"index": path.name, "stream": stream_id}))
        os.replace(staging, self.data_dir / _POINTER)

    def _sweep(self, keep: Path | None) -> None:
        for child in self.data_dir.glob("index-*"):
            if child != keep:
                shutil.rmtree(child, ignore_errors=True)

"""A local SMTP server that keeps every message as an .eml file instead of delivering it.

`make run` and the tests point the mailer at it (as Mailhog does for other stacks), so password
reset e-mails travel over real SMTP and can be read from `.sharehub/mail/`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope


class _SaveToDirectory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.directory / f".{name}"
        tmp.write_bytes(content)
        tmp.rename(self.directory / name)  # readers never see a half-written message
        return "250 Message accepted for delivery"


def serve(directory: Path, port: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(_SaveToDirectory(directory), hostname="127.0.0.1", port=port)
    controller.start()
    stopped = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="ShareHub dev mail sink")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.dir, args.port)

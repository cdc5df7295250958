"""Background work every gateway process does besides serving requests: turning password reset
requests into e-mails and delivering the e-mail outbox. Safe to run in many processes at once
(rows are claimed with SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sharehub.mailer import send_due
from sharehub.password_reset import process_requests
from sharehub.platform import Platform

log = logging.getLogger(__name__)
_INTERVAL_SECS = 1.0


async def run_background_workers(platform: Platform, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await process_requests(platform)
            await send_due(platform)
        except Exception:
            # A dependency hiccup must not kill the loop; the work stays queued for the next turn.
            log.exception("background work failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _INTERVAL_SECS)

"""Background work every gateway process does besides serving requests: turning password reset
requests into e-mails, delivering the e-mail outbox, dropping expired idempotency keys, events
past the replay window and command results and consumed-event marks past the retry horizon.
Safe to run in many processes at once (rows are claimed with SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sharehub.mailer import send_due
from sharehub.password_reset import process_requests
from sharehub.platform import Platform
from storage.channels import purge_published
from storage.consumer_positions import purge_idle
from storage.idempotency import purge_expired
from storage.runtime import purge_processed

log = logging.getLogger(__name__)
_INTERVAL_SECS = 1.0
_PURGE_EVERY_SECS = 3600.0


async def run_background_workers(platform: Platform, stop: asyncio.Event) -> None:
    purged_at = 0.0
    while not stop.is_set():
        try:
            await process_requests(platform)
            await send_due(platform)
            if time.monotonic() - purged_at >= _PURGE_EVERY_SECS:
                # Expired Idempotency-Key records are only ever overwritten on reuse; drop the rest.
                await purge_expired(platform.db)
                # Published events older than the replay window (a client further behind resyncs).
                await purge_published(platform.db)
                # Command results and consumed-event marks past every retry horizon.
                await purge_processed(platform.db, platform.settings.dedup_retention_secs)
                # Consumers' per-entity positions of channels quiet past the outbox's retention.
                await purge_idle(platform.db)
                purged_at = time.monotonic()
        except Exception:
            # A dependency hiccup must not kill the loop; the work stays queued for the next turn.
            log.exception("background work failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _INTERVAL_SECS)

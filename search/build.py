"""Building a replica's state from a Postgres snapshot: the index of published listings, the
calendars of the availability book, the category tree."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from search import source
from search.availability import AvailabilityBook
from search.categories import CategoryTree
from search.documents import listing_document, listing_key
from search.index import ListingIndex

# A calendar is kept from a day back: "today" in Moscow starts up to a day before now in UTC.
CALENDAR_LOOKBACK = timedelta(days=1)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Built:
    index: ListingIndex | None
    book: AvailabilityBook
    categories: CategoryTree
    documents: int


async def build(pool: asyncpg.Pool, path: Path | None, *, documents: bool = True,
                progress: Progress | None = None) -> Built:
    """Everything in one snapshot; `documents=False` loads only the calendars and categories
    (a replica resuming with its index on disk)."""
    book = AvailabilityBook()
    async with source.snapshot(pool) as snap:
        categories = CategoryTree(await source.categories(snap.conn))
        for calendar in await snap.calendars(datetime.now(UTC) - CALENDAR_LOOKBACK):
            book.load(listing_key(calendar.listing_id), quantity=calendar.quantity,
                      blocked_periods=calendar.blocked_periods, holds=calendar.holds, as_of=calendar.as_of)
        if not documents:
            return Built(None, book, categories, 0)
        total = await snap.count_published()
        index = ListingIndex(path, bulk=True)
        done = 0
        if progress is not None:
            progress(0, total)
        async for batch in snap.listings():
            for row in batch:
                index.put_new(listing_document(row, categories.paths))
            done += len(batch)
            if progress is not None:
                progress(done, max(total, done))
        await asyncio.to_thread(index.commit)  # the GIL is free meanwhile: the replica keeps answering
    return Built(index, book, categories, done)

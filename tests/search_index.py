"""Small in-memory listing indexes for the search tests, built the way a replica builds its own
(search/documents.listing_document), so the tests search the fields production indexes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from search.documents import listing_document
from search.index import ListingIndex

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def listing_id(name: str) -> str:
    """A test listing's UUID, derived from the short name the test calls it by."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def listing_row(name: str, title: str, description: str = "", **fields: Any) -> dict[str, Any]:
    """A published listing row (storage.listings columns) with plain defaults for what a test leaves out."""
    return {"id": listing_id(name), "owner_id": listing_id("owner"), "status": "published", "title": title,
            "description": description, "photos": [], "category_id": "power-tools", "city": "Москва", "lat": 55.75,
            "lon": 37.61, "rental_unit": "day", "price_per_unit": 70_000, "instant_book": False, "quantity": 1,
            "created_at": CREATED, "updated_at": CREATED, **fields}


def index_of(rows: Iterable[Mapping[str, Any]], category_paths: Mapping[str, str] | None = None) -> ListingIndex:
    index = ListingIndex(None)
    for row in rows:
        index.put_new(listing_document(row, category_paths or {}))
    index.commit()
    return index


def names_of(index: ListingIndex, hits: Iterable[tuple[Any, Any]], names: Iterable[str]) -> list[str]:
    """The test names of search hits, in hit order."""
    by_id = {listing_id(name): name for name in names}
    searcher = index.searcher()
    return [by_id[searcher.doc(address)["id"][0]] for _, address in hits]

"""Listing rows as index documents: category paths, filters on fast fields and facets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from tantivy import Facet, FieldType, Index, Occur, Query

from search.analysis import register
from search.documents import category_paths, is_searchable, listing_document
from search.schema import build_schema

CATEGORIES: list[dict[str, Any]] = [
    {"id": "tools", "parent_id": None}, {"id": "power-tools", "parent_id": "tools"},
    {"id": "camping", "parent_id": None}, {"id": "tents", "parent_id": "camping"},
]


def _row(listing_id: str, category: str, price: int, **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, listing_id)), "status": "published",
            "title": f"Вещь {listing_id}", "description": "Описание",
            "category_id": category, "city": "Москва", "rental_unit": "day", "price_per_unit": price,
            "lat": 55.75, "lon": 37.61, "instant_book": False, "owner_id": "o1",
            "created_at": datetime(2026, 11, 1, tzinfo=UTC), "updated_at": None, **extra}


def test_category_paths_go_from_the_root() -> None:
    assert category_paths(CATEGORIES) == {"tools": "/tools", "power-tools": "/tools/power-tools",
                                          "camping": "/camping", "tents": "/camping/tents"}
    cycle: list[dict[str, Any]] = [{"id": "a", "parent_id": "b"}, {"id": "b", "parent_id": "a"}]
    assert category_paths(cycle)["a"] == "/b/a"  # a cycle (a data bug) ends the path, never loops


def test_only_published_listings_are_searchable() -> None:
    assert is_searchable({"status": "published"})
    assert not any(is_searchable({"status": s}) for s in ("draft", "pending_review", "paused", "archived"))


def test_filters_by_category_tree_and_price_on_fast_fields() -> None:
    schema = build_schema()
    index = Index(schema)
    register(index)
    writer = index.writer(50_000_000, 1)
    paths = category_paths(CATEGORIES)
    for row in (_row("drill", "power-tools", 70_000), _row("saw", "tools", 30_000), _row("tent", "tents", 50_000),
                _row("tent2", "tents", 90_000, instant_book=True)):
        writer.add_document(listing_document(row, paths, owner_rating=4.5))
    writer.commit()
    index.reload()
    searcher = index.searcher()

    def ids(query: Query) -> set[str]:
        return {searcher.doc(a)["title"][0].removeprefix("Вещь ") for _, a in searcher.search(query, 10).hits}

    tools = Query.term_query(schema, "category", Facet.from_string("/tools"))
    assert ids(tools) == {"drill", "saw"}  # a parent category finds its children
    cheap = Query.range_query(schema, "price", FieldType.Integer, None, 60_000)
    assert ids(cheap) == {"saw", "tent"}
    camping = Query.term_query(schema, "category", Facet.from_string("/camping"))
    instant = Query.term_query(schema, "instant_book", True)
    assert ids(Query.boolean_query([(Occur.Must, camping), (Occur.Must, instant)])) == {"tent2"}


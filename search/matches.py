"""Answering from the matches themselves, when tantivy alone cannot say which to keep.

Distance needs each candidate's coordinates, and "free on these dates" a lookup in the
replica's calendars. Excluding the rest inside tantivy (a term-set query on the key) costs a scan
per search, facet aggregation and page, so instead the matches are read once - one search for all
of them by score, then their numeric fast fields (key, price, time, category, coordinates) in one
native call each, no documents loaded - and the filter, the order, the total and the facet counts
are computed over those arrays in numpy. Ties are ordered by key, as everywhere, so every replica
pages the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tantivy import Query, Searcher

from search.request import SearchRequest


@dataclass
class Matches:
    addresses: list[Any]
    scores: np.ndarray
    keys: np.ndarray
    prices: np.ndarray
    price_order: np.ndarray
    created: np.ndarray
    categories: np.ndarray
    lats: np.ndarray | None = None
    lons: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.addresses)


def read(searcher: Searcher, query: Query, count: int, *, coordinates: bool) -> Matches:
    hits = searcher.search(query, max(1, count), count=False).hits if count else []
    addresses = [address for _, address in hits]

    def column(field: str, dtype: type) -> np.ndarray:
        if not addresses:
            return np.zeros(0, dtype=dtype)
        return np.array(searcher.fast_field_values(field, addresses), dtype=dtype)

    return Matches(
        addresses=addresses, scores=np.array([score for score, _ in hits], dtype=np.float64),
        keys=column("key", np.int64), prices=column("price", np.int64), price_order=column("price_order", np.int64),
        created=column("created_order", np.int64), categories=column("category_num", np.int64),
        lats=column("lat", np.float64) if coordinates else None,
        lons=column("lon", np.float64) if coordinates else None,
    )


def ranked(matches: Matches, kept: np.ndarray, request: SearchRequest, *, has_words: bool,
           distances: np.ndarray | None) -> np.ndarray:
    """The kept positions in the requested order (np.lexsort: the last key sorts first)."""
    keys = matches.keys[kept]
    sort = request.sort
    if sort == "relevance" and not has_words:
        sort = "newest"
    if sort == "distance":
        assert distances is not None
        order = np.lexsort((keys, distances[kept]))
    elif sort == "price_asc":
        order = np.lexsort((keys, matches.price_order[kept]))
    elif sort == "price_desc":
        order = np.lexsort((keys, -matches.price_order[kept]))
    elif sort == "newest":
        order = np.lexsort((keys, -matches.created[kept]))
    else:
        order = np.lexsort((keys, -matches.scores[kept]))
    return kept[order]


def category_counts(matches: Matches, kept: np.ndarray) -> dict[int, int]:
    numbers, counts = np.unique(matches.categories[kept], return_counts=True)
    return dict(zip(numbers.tolist(), counts.tolist(), strict=True))


def band_counts(matches: Matches, kept: np.ndarray, edges: list[int]) -> list[int]:
    """Counts per price band; `edges` are the inner bounds (a price equal to one opens its band)."""
    bands = np.searchsorted(np.array(edges, dtype=np.int64), matches.prices[kept], side="right")
    counts: list[int] = np.bincount(bands, minlength=len(edges) + 1).tolist()
    return counts

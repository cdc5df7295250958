"""Answering a search: text, filters, availability, distance, sort, facets and snippets.

The words (search/query.py), category (a facet term: children included), price, city and
instant-book filters and the geo bounding box (two range queries) run inside tantivy. What it
cannot decide - exact distance, "free on these dates" (search/availability.py) - is decided over
the matches themselves: their fast fields read in one call each, filtered, ordered and counted
in numpy (search/matches.py), so the total, the page and the facets see the same set. Only a
very broad query with dates (many more matches than booked-out listings) excludes the booked-out
set inside tantivy instead. Equal scores and prices are ordered by the listing key everywhere,
so every replica pages alike."""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from tantivy import Facet, FieldType, Occur, Order, Query, Searcher, SnippetGenerator

from search import matches
from search.availability import AvailabilityBook
from search.categories import CategoryTree
from search.documents import city_key
from search.geo import bounding_box, distance_km, distances_km
from search.index import ListingIndex
from search.query import text_query, words
from search.request import SearchRequest, SearchResult, UnknownCategory

# Price bands for the facet, in kopecks per unit (what a renter picks from: "up to 500 ₽" ...).
PRICE_BANDS: tuple[tuple[int | None, int | None], ...] = (
    (None, 50_000), (50_000, 100_000), (100_000, 200_000), (200_000, 500_000), (500_000, None),
)
_BAND_EDGES = [high for _, high in PRICE_BANDS if high is not None]
_SNIPPET_CHARS = 160
_TIE_MARGIN = 20
# Enumerating a match costs far less than excluding a key: enumerate unless the matches outnumber
# the booked-out listings by this much.
_ENUMERATE_PER_EXCLUDED = 8
_MAX_FACET_CATEGORIES = 1000


def _all_of(clauses: list[tuple[Occur, Query]]) -> Query:
    if not clauses:
        return Query.all_query()
    if not any(occur == Occur.Must for occur, _ in clauses):
        clauses = [(Occur.Must, Query.all_query()), *clauses]
    return clauses[0][1] if len(clauses) == 1 else Query.boolean_query(clauses)


class SearchEngine:
    def __init__(self, index: ListingIndex, book: AvailabilityBook, categories: CategoryTree) -> None:
        self.index = index
        self.book = book
        self.categories = categories
        self._busy_cache: tuple[frozenset[int], list[int]] = (frozenset(), [])

    def search(self, request: SearchRequest) -> SearchResult:
        started = time.perf_counter()
        searcher = self.index.searcher()
        schema = self.index.schema
        words_query = text_query(schema, request.q) if request.q.strip() else None
        clauses = self._filters(request)
        if words_query is not None:
            clauses.insert(0, (Occur.Must, words_query))
        has_words = words_query is not None
        offset = (request.page - 1) * request.per_page
        busy = self.book.unavailable(*request.available) if request.available is not None else frozenset()
        point = request.near
        measure = point is not None and (point.radius_km is not None or request.sort == "distance")
        if measure or busy:
            base = _all_of(clauses)
            matching = int(searcher.search(base, 1, count=True).count)  # type: ignore[attr-defined]
            if measure or matching <= _ENUMERATE_PER_EXCLUDED * len(busy):
                total, page, facets = self._from_matches(searcher, base, matching, request, busy,
                                                           has_words=has_words)
                items = self._items(searcher, page, request)
                return SearchResult(total=total, items=items, facets=facets if request.facets else {},
                                    took_ms=(time.perf_counter() - started) * 1000)
            # A broad query (dates and little else): the booked-out set is the smaller list.
            clauses.append((Occur.MustNot, Query.term_set_query(schema, "key", self._sorted(busy))))
        query = _all_of(clauses)
        total, page = self._ranked_page(searcher, query, request, offset, has_words=has_words)
        items = self._items(searcher, page, request)
        facets = self._facets(searcher, query) if request.facets else {}
        return SearchResult(total=total, items=items, facets=facets,
                            took_ms=(time.perf_counter() - started) * 1000)

    def _from_matches(self, searcher: Searcher, query: Query, matching: int, request: SearchRequest,
                      busy: frozenset[int], *, has_words: bool,
                      ) -> tuple[int, list[tuple[Any, float | None]], dict[str, Any]]:
        """Total, page and facets computed over every match (search/matches.py): for distance,
        and for dates when the matches are not many more than the booked-out listings."""
        point = request.near
        found = matches.read(searcher, query, matching, coordinates=point is not None)
        keep = np.ones(len(found), dtype=bool)
        if busy:  # a set lookup per match: cheaper than numpy's isin against thousands of keys
            keep &= np.fromiter((key not in busy for key in found.keys.tolist()), dtype=bool, count=len(found))
        distances = None
        if point is not None:
            assert found.lats is not None and found.lons is not None
            distances = distances_km(point.lat, point.lon, found.lats, found.lons)
            if point.radius_km is not None:
                keep &= distances <= point.radius_km
        kept = np.nonzero(keep)[0]
        offset = (request.page - 1) * request.per_page
        order = matches.ranked(found, kept, request, has_words=has_words, distances=distances)
        page: list[tuple[Any, float | None]] = [
            (found.addresses[i], float(distances[i]) if distances is not None else None)
            for i in order[offset:offset + request.per_page].tolist()]
        facets = {}
        if request.facets:
            direct = {self.categories.by_number.get(number, str(number)): count
                      for number, count in matches.category_counts(found, kept).items()}
            bands = matches.band_counts(found, kept, _BAND_EDGES)
            facets = self._facet_view(direct, bands)
        return len(kept), page, facets

    def _sorted(self, keys: frozenset[int]) -> list[int]:
        """The same booked-out set comes back until the calendars change: sort it once."""
        if self._busy_cache[0] is not keys:
            self._busy_cache = (keys, sorted(keys))
        return self._busy_cache[1]

    # ------------------------------------------------------------------ filters

    def _filters(self, request: SearchRequest) -> list[tuple[Occur, Query]]:
        schema = self.index.schema
        clauses: list[tuple[Occur, Query]] = []
        if request.category is not None:
            if request.category not in self.categories:
                raise UnknownCategory(request.category)
            facet = Facet.from_string(self.categories.path(request.category))
            clauses.append((Occur.Must, Query.term_query(schema, "category", facet)))
        if request.price_min is not None or request.price_max is not None:
            clauses.append((Occur.Must, Query.range_query(schema, "price", FieldType.Integer,
                                                          request.price_min, request.price_max)))
        if request.city:
            clauses.append((Occur.Must, Query.term_query(schema, "city_key", city_key(request.city))))
        if request.instant_book is not None:
            clauses.append((Occur.Must, Query.term_query(schema, "instant_book", request.instant_book)))
        if request.near is not None and request.near.radius_km is not None:
            box = bounding_box(request.near.lat, request.near.lon, request.near.radius_km)
            clauses.append((Occur.Must, Query.range_query(schema, "lat", FieldType.Float, box.min_lat, box.max_lat)))
            if not box.wraps and (box.min_lon > -180.0 or box.max_lon < 180.0):
                clauses.append((Occur.Must, Query.range_query(schema, "lon", FieldType.Float,
                                                              box.min_lon, box.max_lon)))
        return clauses

    # ------------------------------------------------------------------ ranking

    def _ranked_page(self, searcher: Searcher, query: Query, request: SearchRequest, offset: int, *,
                     has_words: bool) -> tuple[int, list[tuple[Any, float | None]]]:
        sort = request.sort
        if sort == "relevance" and not has_words:
            sort = "newest"  # without words every match scores the same: show the newest first
        if sort == "relevance":
            return self._relevance_page(searcher, query, request, offset)
        else:
            field, order = {"price_asc": ("price_order", Order.Asc), "price_desc": ("price_order", Order.Desc),
                            "newest": ("created_at", Order.Desc)}[sort]
            result = searcher.search(query, request.per_page, count=True, order_by_field=field, offset=offset,
                                     order=order)
        hits: list[tuple[Any, float | None]] = [(address, None) for _, address in result.hits]
        return int(result.count or 0), hits  # type: ignore[attr-defined]  # stubs lack `count`

    def _relevance_page(self, searcher: Searcher, query: Query, request: SearchRequest,
                        offset: int) -> tuple[int, list[tuple[Any, float | None]]]:
        """By score, equal scores by key: every replica pages in the same order (tantivy breaks
        ties by position in its own index). Hits past the page are fetched until the score drops
        below the page's last one, so ties straddling the page's end are all ordered too."""
        end = offset + request.per_page
        limit = end + _TIE_MARGIN
        result = searcher.search(query, limit, count=True)
        total = int(result.count or 0)  # type: ignore[attr-defined]  # stubs lack `count`
        hits = result.hits
        if len(hits) == limit and hits[-1][0] == hits[min(end, len(hits)) - 1][0]:
            # The tie runs past what was fetched: fetch every match (one more search) to see it all.
            hits = searcher.search(query, total, count=False).hits
        if not hits:
            return total, []
        # tantivy returns hits by score: everything scoring above the page's last score is on
        # this page or before it, and only the smallest keys of the boundary's tie complete it.
        boundary = hits[min(end, len(hits)) - 1][0]
        above = [hit for hit in hits if hit[0] > boundary]
        tied = [hit for hit in hits if hit[0] == boundary]
        above_keys: list[Any] = searcher.fast_field_values("key", [a for _, a in above]) if above else []
        ranked = [address for _, _, address in sorted(
            ((-score, key, address) for (score, address), key in zip(above, above_keys, strict=True)),
            key=_score_then_key)]
        tied_keys = np.array(searcher.fast_field_values("key", [address for _, address in tied]), dtype=np.int64)
        smallest = np.argsort(tied_keys, kind="stable")[:end - len(above)]
        ranked += [tied[i][1] for i in smallest.tolist()]
        return total, [(address, None) for address in ranked[offset:end]]

    # ------------------------------------------------------------------ output

    def _items(self, searcher: Searcher, page: list[tuple[Any, float | None]],
               request: SearchRequest) -> list[dict[str, Any]]:
        if not page:
            return []
        highlight = self._highlight_query(request.q)
        generators = {}
        if highlight is not None:
            for field in ("title", "description"):
                generator = SnippetGenerator.create(searcher, highlight, self.index.schema, field)
                generator.set_max_num_chars(_SNIPPET_CHARS)
                generators[field] = generator
        items = []
        for address, distance in page:
            document = searcher.doc(address)
            fields = document.to_dict()
            item = _item(fields)
            item["snippets"] = _snippets(document, fields, generators)
            if request.near is not None:
                item["distance_km"] = round(distance if distance is not None else _distance(request, item), 3)
            items.append(item)
        return items

    def _highlight_query(self, text: str) -> Query | None:
        """The exact stems only: a snippet marks the words the user typed, in any form."""
        schema = self.index.schema
        terms = [term for _, term in words(text)] if text.strip() else []
        if not terms:
            return None
        return Query.boolean_query([(Occur.Should, Query.term_query(schema, field, term))
                                    for term in terms for field in ("title", "description")])

    def _facets(self, searcher: Searcher, query: Query) -> dict[str, Any]:
        ranges = [{k: v for k, v in (("from", low), ("to", high)) if v is not None} for low, high in PRICE_BANDS]
        aggregations = {
            "categories": {"terms": {"field": "category_id", "size": _MAX_FACET_CATEGORIES}},
            "prices": {"range": {"field": "price", "ranges": ranges}},
        }
        result = searcher.aggregate(query, aggregations)
        direct = {bucket["key"]: int(bucket["doc_count"]) for bucket in result["categories"]["buckets"]}
        # Buckets by their bounds: an index with no documents at all returns none.
        found = {(b.get("from"), b.get("to")): int(b["doc_count"]) for b in result["prices"]["buckets"]}
        bands = [found.get((None if low is None else float(low), None if high is None else float(high)), 0)
                 for low, high in PRICE_BANDS]
        return self._facet_view(direct, bands)

    def _facet_view(self, direct: dict[str, int], bands: list[int]) -> dict[str, Any]:
        """Category counts (direct -> with descendants) and price-band counts, as the API shows them."""
        counts = self.categories.rolled_up(direct)
        categories = []
        for category_id, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            category = self.categories.by_id.get(category_id)
            categories.append({"id": category_id, "parent_id": category.parent_id if category else None,
                               "name": {"ru": category.name_ru if category else category_id,
                                        "en": category.name_en if category else category_id},
                               "count": count})
        price_bands = [{"min": low, "max": high, "count": count}
                       for (low, high), count in zip(PRICE_BANDS, bands, strict=True)]
        return {"categories": categories, "price_bands": price_bands}


def _score_then_key(hit: tuple[Any, ...]) -> tuple[float, int]:
    return hit[0], hit[1]


def _first(document: dict[str, list[Any]], field: str, default: Any = None) -> Any:
    values = document.get(field)
    return values[0] if values else default


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


def _item(document: dict[str, list[Any]]) -> dict[str, Any]:
    photo = _first(document, "photo", "")
    return {
        "id": _first(document, "id"),
        "owner_id": _first(document, "owner_id"),
        "title": _first(document, "title"),
        "category_id": _first(document, "category_id"),
        "city": _first(document, "city"),
        "lat": _first(document, "lat"),
        "lon": _first(document, "lon"),
        "rental_unit": _first(document, "rental_unit"),
        "price_per_unit": _first(document, "price"),
        "currency": "RUB",
        "instant_book": _first(document, "instant_book"),
        "photo": photo or None,
        "created_at": _iso(_first(document, "created_at")),
    }


def _snippets(document: Any, fields: dict[str, list[Any]],
              generators: dict[str, SnippetGenerator]) -> dict[str, str]:
    """HTML (escaped text, matched words in <b>): the title and a passage of the description."""
    out = {}
    for field in ("title", "description"):
        snippet_html = ""
        if field in generators:
            snippet = generators[field].snippet_from_doc(document)
            if snippet.highlighted():
                snippet_html = snippet.to_html()
        if not snippet_html:
            text = str(_first(fields, field, ""))
            if len(text) > _SNIPPET_CHARS:
                text = text[:_SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
            snippet_html = html.escape(text)
        out[field] = snippet_html
    return out


def _distance(request: SearchRequest, item: dict[str, Any]) -> float:
    assert request.near is not None
    return distance_km(request.near.lat, request.near.lon, float(item["lat"]), float(item["lon"]))

"""The search engine over a small in-memory index: words in any form and with typos, every filter
and sort, facets, pages, snippets, suggestions, availability and distance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors.periods import LISTING_TIME_ZONE
from search.availability import AvailabilityBook
from search.categories import CategoryTree
from search.documents import listing_document, listing_key
from search.engine import SearchEngine
from search.geo import distance_km
from search.index import ListingIndex
from search.request import Point, SearchRequest, UnknownCategory
from search.suggest import suggest
from tests.search_index import index_of, listing_id, listing_row

CATEGORIES: list[dict[str, Any]] = [
    {"id": "tools", "parent_id": None, "name_ru": "Инструменты", "name_en": "Tools"},
    {"id": "power-tools", "parent_id": "tools", "name_ru": "Электроинструмент", "name_en": "Power tools"},
    {"id": "camping", "parent_id": None, "name_ru": "Туризм", "name_en": "Camping"},
    {"id": "tents", "parent_id": "camping", "name_ru": "Палатки", "name_en": "Tents"},
    {"id": "bikes", "parent_id": None, "name_ru": "Велосипеды", "name_en": "Bikes"},
]
MOSCOW = (55.7558, 37.6173)
_BASE = datetime(2026, 1, 1, tzinfo=UTC)


# name: (title, description, category, price kopecks, city, lat, lon, instant, days old)
LISTINGS: dict[str, tuple[str, str, str, int, str, float, float, bool, int]] = {
    "drill": ("Дрель Makita", "Ударная дрель для бетона, два аккумулятора.", "power-tools", 50_000, "Москва",
              55.76, 37.62, True, 10),
    "drill2": ("Дрель-шуруповёрт Bosch", "Лёгкая дрель для дома.", "power-tools", 40_000, "Москва", 55.80, 37.70,
               False, 5),
    "perf": ("Перфоратор Bosch GBH", "Перфоратор с набором буров.", "power-tools", 90_000, "Санкт-Петербург",
             59.93, 30.33, False, 20),
    "tent": ("Палатка трёхместная", "Туристическая палатка на выходные, лёгкая.", "tents", 120_000, "Москва",
             55.70, 37.50, True, 1),
    "tent2": ("Палатка Quechua 2 Seconds", "Быстрая палатка для фестиваля.", "tents", 80_000, "Казань", 55.79, 49.10,
              False, 3),
    "bike": ("Велосипед горный Stels", "Горный велосипед, 21 скорость.", "bikes", 70_000, "Москва", 55.90, 37.40,
             False, 7),
    "camera": ("Фотоаппарат Sony A7 III", "Беззеркальная камера Sony с объективом.", "camping", 300_000, "Москва",
               55.75, 37.61, True, 2),
    # Inside the 10 km bounding box around the centre of Moscow, but ~12 km away: in a corner.
    "sup": ("Сап-борд надувной", "Доска для сапсерфинга с веслом.", "camping", 20_000, "Химки", 55.83, 37.76,
            False, 30),
    "bag": ("Спальные мешки Trek", "Два тёплых мешка до -10.", "camping", 30_000, "Тверь", 56.86, 35.90, False, 40),
}


def _row(name: str) -> dict[str, Any]:
    title, description, category, price, city, lat, lon, instant, age = LISTINGS[name]
    created = _BASE - timedelta(days=age)
    return listing_row(name, title, description, category_id=category, city=city, lat=lat, lon=lon,
                       price_per_unit=price, instant_book=instant, created_at=created, updated_at=created)


@pytest.fixture(scope="module")
def engine() -> SearchEngine:
    categories = CategoryTree(CATEGORIES)
    return SearchEngine(index_of((_row(name) for name in LISTINGS), categories.paths), AvailabilityBook(), categories)


def _name(wanted: str) -> str:
    return next(name for name in LISTINGS if listing_id(name) == wanted)


def _names(engine: SearchEngine, **request: Any) -> list[str]:
    by_id = {listing_id(name): name for name in LISTINGS}
    result = engine.search(SearchRequest(**request))
    return [by_id[item["id"]] for item in result.items]


def test_any_word_form_finds_the_listing(engine: SearchEngine) -> None:
    assert set(_names(engine, q="велосипеды")) == {"bike"}
    assert set(_names(engine, q="палатку")) == {"tent", "tent2"}
    assert set(_names(engine, q="дрели")) == {"drill", "drill2"}
    assert _names(engine, q="sony a7") == ["camera"]  # Latin words and digits too


def test_cyrillic_typos_are_forgiven_by_word_length(engine: SearchEngine) -> None:
    assert set(_names(engine, q="велосепед")) == {"bike"}
    assert set(_names(engine, q="палтка")) == {"tent", "tent2"}
    assert _names(engine, q="перфаратор") == ["perf"]
    # The stemmer cuts this misspelling short ("спал", 2 edits from "спальн"); as written it is 1 edit.
    assert _names(engine, q="спальые мешки") == ["bag"]


def test_every_word_must_match_and_title_outranks_description(engine: SearchEngine) -> None:
    assert set(_names(engine, q="палатка лёгкая")) == {"tent"}
    # "дрель" is in both drills' titles; "бетона" only in the Makita's description.
    assert _names(engine, q="дрель бетон") == ["drill"]


def test_category_filter_includes_children(engine: SearchEngine) -> None:
    assert set(_names(engine, category="tools")) == {"drill", "drill2", "perf"}
    assert set(_names(engine, category="tents")) == {"tent", "tent2"}
    with pytest.raises(UnknownCategory):
        engine.search(SearchRequest(category="no-such"))


def test_price_city_and_instant_book_filters(engine: SearchEngine) -> None:
    assert set(_names(engine, price_min=70_000, price_max=120_000)) == {"perf", "tent", "tent2", "bike"}
    assert set(_names(engine, city="москва", category="tools")) == {"drill", "drill2"}
    assert set(_names(engine, instant_book=True)) == {"drill", "tent", "camera"}
    assert set(_names(engine, instant_book=False, q="палатка")) == {"tent2"}


def test_sorts(engine: SearchEngine) -> None:
    assert _names(engine, category="tools", sort="price_asc") == ["drill2", "drill", "perf"]
    assert _names(engine, category="tools", sort="price_desc") == ["perf", "drill", "drill2"]
    assert _names(engine, category="tools", sort="newest") == ["drill2", "drill", "perf"]
    # No words: "relevance" means newest first.
    assert _names(engine, category="tents") == ["tent", "tent2"]


def test_pages_cover_every_match_once(engine: SearchEngine) -> None:
    seen: list[str] = []
    for page in (1, 2, 3):
        result = engine.search(SearchRequest(sort="price_asc", page=page, per_page=3))
        assert result.total == len(LISTINGS)
        seen += [item["id"] for item in result.items]
    assert len(seen) == len(set(seen)) == len(LISTINGS)
    assert engine.search(SearchRequest(page=4, per_page=3)).items == []


def test_facets_count_categories_with_their_parents_and_price_bands(engine: SearchEngine) -> None:
    facets = engine.search(SearchRequest(city="Москва")).facets
    counts = {c["id"]: c["count"] for c in facets["categories"]}
    assert counts == {"tools": 2, "power-tools": 2, "tents": 1, "camping": 2, "bikes": 1}
    bands = {(b["min"], b["max"]): b["count"] for b in facets["price_bands"]}
    assert bands[(None, 50_000)] == 1 and bands[(50_000, 100_000)] == 2 and bands[(100_000, 200_000)] == 1
    assert bands[(200_000, 500_000)] == 1 and bands[(500_000, None)] == 0
    assert sum(bands.values()) == 5


def test_snippets_mark_the_words_in_any_form(engine: SearchEngine) -> None:
    item = engine.search(SearchRequest(q="палатки выходных")).items[0]
    assert "<b>Палатка</b>" in item["snippets"]["title"]
    assert "<b>выходные</b>" in item["snippets"]["description"]
    plain = engine.search(SearchRequest(category="bikes")).items[0]
    assert plain["snippets"]["title"] == "Велосипед горный Stels"


def test_radius_is_exact_and_distance_sort_is_nearest_first(engine: SearchEngine) -> None:
    lat, lon = MOSCOW
    near = _names(engine, near=Point(lat, lon, 10.0), sort="distance")
    expected = sorted((n for n, v in LISTINGS.items() if distance_km(lat, lon, v[5], v[6]) <= 10.0),
                      key=lambda n: distance_km(lat, lon, LISTINGS[n][5], LISTINGS[n][6]))
    assert near == expected and "bike" not in near  # the bike is ~18 km out
    result = engine.search(SearchRequest(near=Point(lat, lon, 10.0), sort="price_asc"))
    assert result.total == len(expected)
    assert all(item["distance_km"] <= 10.0 for item in result.items)
    assert sum(c["count"] for c in result.facets["categories"] if c["parent_id"] is None) == len(expected)
    assert "sup" not in near  # in a corner of the bounding box, outside the circle
    everything = _names(engine, near=Point(lat, lon), sort="distance")  # no radius: all, nearest first
    assert everything[:2] == ["drill", "camera"] and everything[-1] == "tent2" and len(everything) == len(LISTINGS)


def test_booked_out_listings_are_left_out_for_their_dates(engine: SearchEngine) -> None:
    book = engine.book
    msk = LISTING_TIME_ZONE
    start, until = datetime(2026, 12, 5, tzinfo=msk), datetime(2026, 12, 8, tzinfo=msk)
    tent = listing_key(listing_id("tent"))
    book.apply(tent, {"change": "held", "rental_id": "r1", "start": start.isoformat(),
                      "until": until.isoformat(), "units": 1, "unit_numbers": [1]}, at=("e", 1))
    try:
        assert set(_names(engine, q="палатка", available=(start, until))) == {"tent2"}
        assert set(_names(engine, q="палатка", available=(until, until + timedelta(days=2)))) == {"tent", "tent2"}
        result = engine.search(SearchRequest(category="tents", available=(start + timedelta(days=1), until)))
        assert result.total == 1 and {c["id"]: c["count"] for c in result.facets["categories"]}["tents"] == 1
        # A broad query (everything matches: the whole booked-out set is excluded as it is) ...
        assert "tent" not in _names(engine, available=(start, until)) and \
            len(_names(engine, available=(start, until))) == len(LISTINGS) - 1
        # ... and with a radius and a distance sort (booked out and too far both left out).
        near = Point(*MOSCOW, 10.0)
        assert "tent" in _names(engine, near=near, sort="distance")
        by_distance = engine.search(SearchRequest(near=near, sort="distance", available=(start, until)))
        assert "tent" not in {_name(i["id"]) for i in by_distance.items} and by_distance.total == len(by_distance.items)
        assert engine.search(SearchRequest(near=near, available=(start, until))).total == by_distance.total
    finally:
        book.apply(tent, {"change": "released", "rental_id": "r1", "start": start.isoformat(),
                          "until": until.isoformat(), "units": 1, "unit_numbers": [1]}, at=("e", 2))
    assert set(_names(engine, q="палатка", available=(start, until))) == {"tent", "tent2"}


def test_suggest_completes_words_titles_and_categories(engine: SearchEngine) -> None:
    out = suggest(engine.index, engine.categories, "дре", 5)
    assert out["completions"][0] == {"text": "дрель", "count": 2}
    assert {t["title"] for t in out["titles"]} == {"Дрель Makita", "Дрель-шуруповёрт Bosch"}
    out = suggest(engine.index, engine.categories, "дрель ma", 5)
    assert [c["text"] for c in out["completions"]] == ["дрель makita"]
    assert [t["title"] for t in out["titles"]] == ["Дрель Makita"]
    assert [c["id"] for c in suggest(engine.index, engine.categories, "пал", 5)["categories"]] == ["tents"]
    assert [c["id"] for c in suggest(engine.index, engine.categories, "power", 5)["categories"]] == ["power-tools"]
    empty = suggest(engine.index, engine.categories, "   ", 5)
    assert empty["completions"] == [] and empty["titles"] == []


def test_an_empty_index_answers_with_zero_counts() -> None:
    empty = SearchEngine(ListingIndex(None), AvailabilityBook(), CategoryTree(CATEGORIES))
    result = empty.search(SearchRequest(q="дрель", category="tools", near=Point(*MOSCOW, 5.0), sort="distance"))
    assert result.total == 0 and result.items == [] and result.facets["categories"] == []
    assert [band["count"] for band in result.facets["price_bands"]] == [0] * 5


def test_ties_come_in_the_same_order_whatever_the_order_of_indexing() -> None:
    """Pages may come from different replicas: equal prices and equal scores must not depend on
    where a document sits in one replica's index."""
    categories = CategoryTree(CATEGORIES)
    rows = [{**_row("drill"), "id": listing_id(f"twin{i}"), "title": "Дрель Makita"} for i in range(30)]
    orders = []
    for sequence in (rows, rows[::-1]):
        index = ListingIndex(None)
        for row in sequence:
            index.put_new(listing_document(row, categories.paths))
            index.commit()  # a segment each: positions differ between the two indexes
        engine = SearchEngine(index, AvailabilityBook(), categories)
        # With a radius the page is ordered over the matches in numpy: the same rule applies.
        orders.append([[item["id"] for item in engine.search(SearchRequest(q="дрель", sort=sort, page=page, near=near,
                                                                           per_page=7)).items]
                       for near in (None, Point(*MOSCOW, 50.0))
                       for sort in ("relevance", "price_asc", "price_desc") for page in (1, 2, 3)])
    assert orders[0] == orders[1]
    assert len({i for page in orders[0][:3] for i in page}) == 21  # three pages, no repeats


@pytest.mark.parametrize("request_fields", [
    {"q": "палатка"}, {"category": "tools", "sort": "price_desc"}, {"sort": "newest"}, {"q": "дрель", "city": "Москва"},
])
def test_counting_over_the_matches_agrees_with_tantivy(engine: SearchEngine, request_fields: dict[str, Any]) -> None:
    """A radius that holds the whole Earth sends the query down the numpy path (search/matches.py):
    the same total, order and facets as tantivy's own."""
    plain = engine.search(SearchRequest(**request_fields)).as_dict()
    everywhere = engine.search(SearchRequest(**request_fields, near=Point(0.0, 0.0, 20_100.0))).as_dict()
    for item in everywhere["items"]:
        del item["distance_km"]
    for result in (plain, everywhere):
        del result["took_ms"]
    assert everywhere == plain and plain["total"] > 0

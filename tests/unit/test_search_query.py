"""Typo tolerance and ranking of the user's words (search/query.py)."""

from __future__ import annotations

import pytest

from search.index import ListingIndex
from search.query import text_query, typos_allowed
from tests.search_index import index_of, listing_row, names_of

LISTINGS = {
    "bike": ("Горный велосипед Stels", "Надёжный велосипед для леса"),
    "bike-typo": ("Велосепед детский", "Для детей от пяти лет"),
    "tent": ("Палатка туристическая", "Четырёхместная"),
    "drill": ("Дрель Makita", "Аккумуляторная"),
    "camera": ("Фотоаппарат Sony A7", "Полнокадровая беззеркальная камера"),
}


@pytest.fixture(scope="module")
def index() -> ListingIndex:
    return index_of(listing_row(name, title, description) for name, (title, description) in LISTINGS.items())


def _ranked(index: ListingIndex, text: str) -> list[str]:
    query = text_query(index.schema, text)
    assert query is not None
    return names_of(index, index.searcher().search(query, 10).hits, LISTINGS)


def test_typos_allowed_grow_with_the_word() -> None:
    assert [typos_allowed(w) for w in ("дрел", "палтка", "велосипед", "фотоаппарат")] == [0, 1, 2, 2]


@pytest.mark.parametrize(("typed", "expected"), [
    ("велосепед", "bike"),      # и -> е
    ("палтка", "tent"),         # a letter missing
    ("плаатка", "tent"),        # two letters swapped
    ("фотоапарат", "camera"),   # a doubled letter missed
])
def test_cyrillic_typos_find_the_listing(index: ListingIndex, typed: str, expected: str) -> None:
    assert expected in _ranked(index, typed)


def test_a_transliteration_is_not_a_typo(index: ListingIndex) -> None:
    assert _ranked(index, "сони") == []  # "Sony" in Cyrillic: no match by accident (no transliteration yet)


def test_short_words_need_to_be_exact(index: ListingIndex) -> None:
    assert _ranked(index, "дрел") == ["drill"]  # the stem itself
    assert _ranked(index, "драл") == []          # one edit away, but too short to guess


def test_exact_and_stemmed_matches_rank_above_fuzzy_ones(index: ListingIndex) -> None:
    ranked = _ranked(index, "велосипеды")
    assert ranked[0] == "bike" and "bike-typo" in ranked


def test_every_word_must_match(index: ListingIndex) -> None:
    assert _ranked(index, "горный велосипед") == ["bike"]
    assert _ranked(index, "горная палатка") == []


def test_only_stop_words_is_no_query(index: ListingIndex) -> None:
    assert text_query(index.schema, "и на the") is None

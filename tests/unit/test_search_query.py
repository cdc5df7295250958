"""Typo tolerance and ranking of the user's words (search/query.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tantivy import Document, Index

from search.analysis import register
from search.query import text_query, typos_allowed
from search.schema import build_schema

LISTINGS = {
    "bike": ("Горный велосипед Stels", "Надёжный велосипед для леса"),
    "bike-typo": ("Велосепед детский", "Для детей от пяти лет"),
    "tent": ("Палатка туристическая", "Четырёхместная"),
    "drill": ("Дрель Makita", "Аккумуляторная"),
    "camera": ("Фотоаппарат Sony A7", "Полнокадровая беззеркальная камера"),
}


@pytest.fixture(scope="module")
def index() -> Index:
    idx = Index(build_schema())
    register(idx)
    writer = idx.writer(50_000_000, 1)
    now = datetime(2026, 11, 27, tzinfo=UTC)
    for listing_id, (title, description) in LISTINGS.items():
        writer.add_document(Document(id=listing_id, title=title, description=description, category_id="x",
                                     city="Москва", rental_unit="day", price=1, lat=0.0, lon=0.0, owner_rating=0.0,
                                     instant_book=False, created_at=now, updated_at=now))
    writer.commit()
    idx.reload()
    return idx


def _ranked(index: Index, text: str) -> list[str]:
    query = text_query(index.schema, text)
    assert query is not None
    searcher = index.searcher()
    return [searcher.doc(address)["id"][0] for _, address in searcher.search(query, 10).hits]


def test_typos_allowed_grow_with_the_word() -> None:
    assert [typos_allowed(w) for w in ("дрел", "палтка", "велосипед", "фотоаппарат")] == [0, 1, 2, 2]


@pytest.mark.parametrize(("typed", "expected"), [
    ("велосепед", "bike"),      # и -> е
    ("палтка", "tent"),         # a letter missing
    ("плаатка", "tent"),        # two letters swapped
    ("фотоапарат", "camera"),   # a doubled letter missed
])
def test_cyrillic_typos_find_the_listing(index: Index, typed: str, expected: str) -> None:
    assert expected in _ranked(index, typed)


def test_a_transliteration_is_not_a_typo(index: Index) -> None:
    assert _ranked(index, "сони") == []  # "Sony" in Cyrillic: no match by accident (no transliteration yet)


def test_short_words_need_to_be_exact(index: Index) -> None:
    assert _ranked(index, "дрел") == ["drill"]  # the stem itself
    assert _ranked(index, "драл") == []          # one edit away, but too short to guess


def test_exact_and_stemmed_matches_rank_above_fuzzy_ones(index: Index) -> None:
    ranked = _ranked(index, "велосипеды")
    assert ranked[0] == "bike" and "bike-typo" in ranked


def test_every_word_must_match(index: Index) -> None:
    assert _ranked(index, "горный велосипед") == ["bike"]
    assert _ranked(index, "горная палатка") == []


def test_only_stop_words_is_no_query(index: Index) -> None:
    assert text_query(index.schema, "и на the") is None

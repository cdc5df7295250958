"""Russian and English morphology in the search analyser and schema (issue 5's first slice)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tantivy import Document, Index

from search.analysis import register, terms
from search.schema import build_schema

TITLES = {
    "1": "Горный велосипед Stels Navigator",
    "2": "Палатка на четверых, двухслойная",
    "3": "Ударная дрель Bosch с кейсом",
    "4": "Экшн-камера GoPro 12 с креплениями",
    "5": "Ёлочные гирлянды, 10 метров",
    "6": "Sony A7 III camera body with two lenses",
}


@pytest.fixture(scope="module")
def index() -> Index:
    idx = Index(build_schema())
    register(idx)
    writer = idx.writer(50_000_000, 1)
    now = datetime(2026, 11, 27, tzinfo=UTC)
    for listing_id, title in TITLES.items():
        writer.add_document(Document(
            id=listing_id, title=title, description="", category_id="tools", city="Москва", rental_unit="day",
            price=70_000, lat=55.75, lon=37.61, owner_rating=4.8, instant_book=True, created_at=now,
            updated_at=now))
    writer.commit()
    idx.reload()
    return idx


def _found(index: Index, query: str) -> set[str]:
    searcher = index.searcher()
    hits = searcher.search(index.parse_query(query, ["title", "description"]), 10).hits
    return {searcher.doc(address)["id"][0] for _, address in hits}


@pytest.mark.parametrize(("query", "expected"), [
    ("велосипеды", {"1"}),
    ("велосипедов горных", {"1"}),
    ("палатку", {"2"}),
    ("палатки", {"2"}),
    ("дрели", {"3"}),
    ("камеры", {"4"}),
    ("елочная гирлянда", {"5"}),  # ё and е are one letter to a searcher
    ("cameras", {"6"}),
    ("bodies", {"6"}),
    ("gopro", {"4"}),
])
def test_any_word_form_finds_the_listing(index: Index, query: str, expected: set[str]) -> None:
    assert _found(index, query) == expected


def test_stop_words_and_case_do_not_matter() -> None:
    assert terms("Палатка НА четверых и the Tent") == terms("палатка четверых tent")
    assert terms("велосипеды") == terms("Велосипедов") == ["велосипед"]


def test_junk_tokens_are_not_indexed() -> None:
    assert terms("x" * 60 + " дрель") == ["дрел"]

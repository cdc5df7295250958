"""Russian and English morphology in the search analyser and schema (issue 5's first slice)."""

from __future__ import annotations

import pytest
from tantivy import Occur, Query

from search.analysis import terms
from search.index import ListingIndex
from tests.search_index import index_of, listing_row, names_of

TITLES = {
    "1": "Горный велосипед Stels Navigator",
    "2": "Палатка на четверых, двухслойная",
    "3": "Ударная дрель Bosch с кейсом",
    "4": "Экшн-камера GoPro 12 с креплениями",
    "5": "Ёлочные гирлянды, 10 метров",
    "6": "Sony A7 III camera body with two lenses",
}


@pytest.fixture(scope="module")
def index() -> ListingIndex:
    return index_of(listing_row(name, title) for name, title in TITLES.items())


def _found(index: ListingIndex, query: str) -> set[str]:
    """Listings with any of the query's terms: the analyser must give the same terms both ways."""
    schema = index.schema
    either = Query.boolean_query([(Occur.Should, Query.term_query(schema, field, term))
                                  for term in terms(query) for field in ("title", "description")])
    return set(names_of(index, index.searcher().search(either, 10).hits, TITLES))


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
def test_any_word_form_finds_the_listing(index: ListingIndex, query: str, expected: set[str]) -> None:
    assert _found(index, query) == expected


def test_stop_words_and_case_do_not_matter() -> None:
    assert terms("Палатка НА четверых и the Tent") == terms("палатка четверых tent")
    assert terms("велосипеды") == terms("Велосипедов") == ["велосипед"]


def test_junk_tokens_are_not_indexed() -> None:
    assert terms("x" * 60 + " дрель") == ["дрел"]

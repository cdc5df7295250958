"""What a user typed, as a tantivy query: every word must match, in any word form, with typos.

Each word is analysed like the index (search/analysis.py), then may match its stem exactly in the
title (weighted most) or the description, or - the stem, or the word as typed against the
title's words as written - within an edit distance that grows with the word's length, as users
know from Meilisearch and Elasticsearch: no typo for words of up to 4 letters (too many short
words are one edit apart), one for 5-8, two from 9. Fuzzy matches weigh less than exact ones,
so "велосипед" ranks a listing that spells it right above one that does not."""

from __future__ import annotations

import functools

from tantivy import Occur, Query, Schema

from search.analysis import build_analyzer, build_word_analyzer

TEXT_FIELDS = ("title", "description")
_FIELD_WEIGHT = {"title": 3.0, "description": 1.0}
_FUZZY_WEIGHT = 0.5
_NO_TYPO_UP_TO = 4
_ONE_TYPO_UP_TO = 8


def typos_allowed(word: str) -> int:
    if len(word) <= _NO_TYPO_UP_TO:
        return 0
    return 1 if len(word) <= _ONE_TYPO_UP_TO else 2


# Built once: constructing the analysers costs more than analysing a query with them.
_stemmed = functools.cache(build_analyzer)
_as_typed = functools.cache(build_word_analyzer)


def words(text: str) -> list[tuple[str, str]]:
    """(word as typed, lowercased; its index term) for each word that survives analysis."""
    out: list[tuple[str, str]] = []
    for word in _as_typed().analyze(text):
        out.extend((word, term) for term in _stemmed().analyze(word))
    return out


def text_query(schema: Schema, text: str) -> Query | None:
    """None when nothing searchable is left (only stop words or punctuation): match everything."""
    clauses = []
    for typed, term in words(text):
        alternatives = []
        distance = typos_allowed(typed)
        for field in TEXT_FIELDS:
            weight = _FIELD_WEIGHT[field]
            alternatives.append((Occur.Should, Query.boost_query(Query.term_query(schema, field, term), weight)))
            if distance:
                fuzzy = Query.fuzzy_term_query(schema, field, term, distance=distance, transposition_cost_one=True)
                alternatives.append((Occur.Should, Query.boost_query(fuzzy, weight * _FUZZY_WEIGHT)))
        if distance:
            # The stemmer cuts a misspelt word where it happens to ("спальые" -> "спал", two edits
            # from "спальн"): the word as typed, against the title's words as written, catches it.
            as_written = Query.fuzzy_term_query(schema, "title_words", typed, distance=distance,
                                                transposition_cost_one=True)
            alternatives.append((Occur.Should, Query.boost_query(as_written, _FIELD_WEIGHT["title"] * _FUZZY_WEIGHT)))
        clauses.append((Occur.Must, Query.boolean_query(alternatives)))
    return Query.boolean_query(clauses) if clauses else None

"""Completing what a user is typing: "дре" -> "дрель", "дрель ма" -> "дрель makita", and the
categories whose name starts that way.

The words before the last are complete (every one must be in the title); the last is a prefix,
completed from the title vocabulary (words as typed, not stemmed, so a completion is a real word)
counted over the listings that have the complete words - the commonest first. Titles that match
come with them, so a client can offer a listing directly."""

from __future__ import annotations

import re
from typing import Any

from tantivy import Occur, Order, Query

from search.categories import CategoryTree
from search.index import ListingIndex

_WORD = re.compile(r"\w+")
_TITLES = 5


def suggest(index: ListingIndex, categories: CategoryTree, text: str, limit: int) -> dict[str, Any]:
    typed = _WORD.findall(text.lower())
    if not typed or text[-1:].isspace():
        # Nothing typed, or the last word is finished: there is nothing to complete.
        complete, prefix = typed, ""
    else:
        complete, prefix = typed[:-1], typed[-1]
    schema = index.schema
    searcher = index.searcher()
    words_query = [(Occur.Must, Query.term_query(schema, "title_words", word)) for word in complete]
    completions: list[dict[str, Any]] = []
    if prefix:
        known = Query.boolean_query(words_query) if words_query else None
        for term, count in searcher.terms_with_prefix("title_words", prefix, filter_query=known, limit=limit):
            if count > 0:
                completions.append({"text": " ".join([*complete, term]), "count": int(count)})
    titles: list[dict[str, Any]] = []
    clauses = list(words_query)
    if prefix:
        clauses.append((Occur.Must, Query.regex_query(schema, "title_words", f"{prefix}.*")))
    if clauses:
        seen: set[str] = set()
        query = Query.boolean_query(clauses)
        for _, address in searcher.search(query, _TITLES * 4, count=False, order_by_field="created_at",
                                          order=Order.Desc).hits:
            document = searcher.doc(address).to_dict()
            title = document["title"][0]
            if title.lower() not in seen:
                seen.add(title.lower())
                titles.append({"id": document["id"][0], "title": title})
            if len(titles) == _TITLES:
                break
    matching = categories.named_like(prefix or (complete[-1] if complete else ""), limit)
    return {
        "q": text,
        "completions": completions[:limit],
        "titles": titles,
        "categories": [{"id": c.id, "parent_id": c.parent_id, "name": {"ru": c.name_ru, "en": c.name_en}}
                       for c in matching],
    }

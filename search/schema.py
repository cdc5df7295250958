"""The index of published listings: which fields, and how each is stored.

Text is analysed (search/analysis.py) for full-text search and stored for snippets; everything a
query filters, sorts or counts by is a fast field (column-oriented, read without loading
documents): price, coordinates (tantivy has no geo type: a bounding box on lat/lon, then exact
distance), owner rating, times, instant booking. The category is a facet (`/tools/power-tools`),
so a filter on a category matches its children too and facet counts come per level."""

from __future__ import annotations

from tantivy import Schema, SchemaBuilder

from search.analysis import ANALYZER, WORDS


def build_schema() -> Schema:
    builder = SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    # The listing id as a number (search/documents.listing_key): a search ordered by it hands back
    # each hit's key without loading its document, and "not these listings" (booked for the
    # dates, outside the radius) is one term-set query on it.
    builder.add_integer_field("key", indexed=True, fast=True)
    # Title words as typed (lowercase, not stemmed): what `suggest` completes a prefix to.
    builder.add_text_field("title_words", stored=False, tokenizer_name=WORDS)
    builder.add_text_field("owner_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("photo", stored=True, tokenizer_name="raw")
    builder.add_text_field("title", stored=True, tokenizer_name=ANALYZER)
    builder.add_text_field("description", stored=True, tokenizer_name=ANALYZER)
    builder.add_facet_field("category")
    builder.add_text_field("category_id", stored=True, tokenizer_name="raw", fast=True)
    builder.add_text_field("city", stored=True, tokenizer_name="raw", fast=True)
    builder.add_text_field("city_key", stored=False, tokenizer_name="raw")  # lowercase, ё as е: the filter
    builder.add_text_field("rental_unit", stored=True, tokenizer_name="raw", fast=True)
    builder.add_integer_field("price", stored=True, indexed=True, fast=True)  # kopecks per unit
    # Sorting by price: the price, then part of the key, in one number - equal prices come in the
    # same order on every replica, so paging does not skip or repeat when pages hit two replicas.
    builder.add_integer_field("price_order", fast=True)
    # Numbers for what fast_field_values can read (numbers only): the category (documents.
    # category_number) and the creation time in microseconds, for facets and sorting computed
    # over the matches in numpy (search/matches.py).
    builder.add_integer_field("category_num", fast=True)
    builder.add_integer_field("created_order", fast=True)
    builder.add_float_field("lat", stored=True, indexed=True, fast=True)
    builder.add_float_field("lon", stored=True, indexed=True, fast=True)
    builder.add_float_field("owner_rating", stored=True, indexed=True, fast=True)
    builder.add_boolean_field("instant_book", stored=True, indexed=True, fast=True)
    builder.add_date_field("created_at", stored=True, indexed=True, fast=True)
    builder.add_date_field("updated_at", stored=True, indexed=True, fast=True)
    return builder.build()

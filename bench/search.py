"""Listing search: the tantivy engine (search/) against Postgres full-text search, in the same run.

    .venv/bin/python bench/search.py                      # 100 000 listings, 3 rounds; a few minutes
    .venv/bin/python bench/search.py --smoke              # 2 000 listings, 1 round; well under a minute

One throwaway Postgres holds the corpus: `seed_database` writes users and listings (Russian
titles and descriptions from sharehub/seed/catalog.py, 20 cities, mostly published). Then:

- **engine**: `search.build.build` makes the tantivy index of the published listings on disk (the
  "full rebuild", timed); `SearchEngine.search` is called in-process.
- **baseline**: the same rows in Postgres with a stored `tsvector` (title weight A, description
  weight B, config `russian`), a GIN index on it and a btree on (lat, lon); queried through asyncpg
  from this process with `websearch_to_tsquery`, ranked by `ts_rank`, the same filters in SQL,
  `LIMIT 20` with `count(*) OVER ()` for the total, `ts_headline` snippets for the 20 rows (the
  engine makes snippets too) and, when facets are on, one more statement: category and price-band
  counts over the same WHERE (GROUPING SETS, one scan). Its connections run with JIT off and
  every execution planned for its own parameters (BASELINE_SETTINGS says why): tuning anyone
  serving search from Postgres would do, so the baseline is not slow for avoidable reasons.

Both get the same requests, a fixed seeded mix built from the catalog's vocabulary, in classes:
word (a word form that is in no title, so stemming has to work), two words, typo (one edit in a
6+ letter word), word + filters (category with its children, price range, city, instant book),
facets (the word queries again, facets on), geo (word + a point in a city + 5-20 km radius, sorted
by distance) and availability (word + free next Saturday to Monday; ~20 % of the listings get
synthetic holds around that weekend, loaded into the engine's AvailabilityBook and into a
bookings-like table for the baseline, which checks them per candidate). Facets are on in every
class but "word" (the API's default is on, and the targets are "with facets"); the baseline counts
them exactly when the engine does.

Latency is measured one query at a time (engine: around `engine.search`; baseline: around its
statements). Throughput: the baseline with `--concurrency` queries in flight on as many
connections; the engine in 2 threads if tantivy releases the GIL during its calls (checked at the
start: does a Python loop keep running while another thread searches? `--engine-threads`
overrides), else sequentially. Every round runs every class on both, alternating which goes
first; the table shows medians over rounds (the machine is shared). Typo recall is the share of
typo queries with at least one hit: Postgres FTS has no fuzzy matching, so its number is expected
to be near zero - and its typo QPS is high only because it finds nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from tantivy import Query as TantivyQuery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.periods import day_start, local_day
from bench.common import measure, revision, throwaway_stack
from search.analysis import terms
from search.availability import AvailabilityBook
from search.build import build
from search.categories import CategoryTree
from search.documents import listing_key
from search.engine import PRICE_BANDS, SearchEngine
from search.geo import EARTH_RADIUS_KM, bounding_box
from search.request import Point, SearchRequest
from sharehub.config import load_settings
from sharehub.progress import Progress
from sharehub.seed.catalog import CITIES, ITEMS, ItemTemplate
from sharehub.seed.generate import seed_database
from storage.db import create_pool
from storage.migrate import migrate

ENGINE, BASELINE = "engine", "baseline"
CLASSES = ("word", "two words", "typo", "filters", "facets", "geo", "availability")
HOLDS_TABLE = "search_bench_holds"
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# Targets from the tracker (100 000 listings, facets included).
TARGET_P50_MS, TARGET_P99_MS, TARGET_QPS_RATIO, TARGET_REBUILD_S = 5.0, 30.0, 5.0, 60.0
# Two threads must beat one by this much to count as "scales" (below it, the GIL serialises them).
# A Python loop that keeps more than this share of its speed while tantivy works in another
# thread means tantivy released the GIL (see gil_kept).
_GIL_RELEASED = 0.25
_HELD_SHARE = 0.2


@dataclass(frozen=True)
class Options:
    listings: int
    users: int
    queries: int
    rounds: int
    seed: int
    concurrency: int
    engine_threads: int | None  # None: decided by the GIL probe


# ============================================================================ the query mix


_INFLECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (ending to replace, endings to try instead); the first ending that fits wins. Candidates
    # that break spelling rules are dropped (_MISSPELLED), so both "ы" and "и" are offered.
    ("ая", ("ую", "ой", "ые", "ие")), ("ый", ("ого", "ые", "ым")), ("ий", ("ого", "его", "ие", "им")),
    ("ой", ("ого", "ые", "ие")), ("а", ("у", "ы", "и", "ой")), ("ь", ("и", "ей", "ем")),
)
_CONSONANT_ENDINGS = ("а", "ы", "и", "ом", "ов", "у")
# Words that already carry a case ending, or lose a vowel when declined (молоток -> молотка):
# a suffix rule would make a non-word of them.
_NOT_DECLINED = ("ом", "ем", "ов", "ок", "ек", "ец", "ень", "я", "ие")
# Title words that are already not in the nominative ("для пикника", "Деда Мороза", "4 стула"):
# the rules above would read them as feminine nouns.
_INFLECTED_IN_TITLES = frozenset({"деда", "мороза", "дыма", "леса", "пикника", "проектора", "сноуборда", "стула"})
# Russian spelling where an ending meets the stem: no ы after г к х ж ш щ ч, no и or adjectival
# ие after a hard consonant, no unstressed о after ж ш щ ч, no его after г к х.
_MISSPELLED = re.compile(r"^(?:[гкхжшщч]ы|[бвдзлмнпрстф]и$|[бвдзлмнпрстф]ие$|[жшщч]о|[гкх]его$)")
_VOWELS = "аеиоуыэюяё"
_LETTERS = "абвгдеиклмнопрстуя"
_CYRILLIC = re.compile(r"[а-яё]+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Word:
    text: str  # as in a title, lowercased
    forms: tuple[str, ...]  # the same stem, spelled as in no title
    items: tuple[ItemTemplate, ...]  # templates with a title that has the word


@dataclass(frozen=True)
class Query:
    kind: str
    request: SearchRequest


def _candidate_forms(word: str) -> list[str]:
    if word.endswith(_NOT_DECLINED) or word in _INFLECTED_IN_TITLES:
        return []
    stem = word
    endings: tuple[str, ...] = _CONSONANT_ENDINGS if word[-1] not in _VOWELS else ()
    for ending, replacements in _INFLECTIONS:
        if word.endswith(ending):
            stem, endings = word[: -len(ending)], replacements
            break
    return [stem + ending for ending in endings if not _MISSPELLED.match(stem[-1] + ending)]


def vocabulary() -> list[Word]:
    """Cyrillic title words of 4+ letters with other forms that stem the same (checked with the
    index's own analyser, so a form the engine would not fold is never used)."""
    title_words = {w for item in ITEMS for name in item.names for w in _WORD.findall(name.lower())}
    found: dict[str, list[ItemTemplate]] = {}
    for item in ITEMS:
        for name in item.names:
            for word in _CYRILLIC.findall(name.lower()):
                if len(word) >= 4 and terms(word) and item not in found.get(word, []):
                    found.setdefault(word, []).append(item)
    words = []
    for word, items in sorted(found.items()):
        forms = tuple(f for f in _candidate_forms(word) if f not in title_words and terms(f) == terms(word))
        if forms:
            words.append(Word(word, forms, tuple(items)))
    return words


def _typo(word: str, rng: random.Random) -> str | None:
    """One edit (delete, swap, replace, double) inside the word, such that the stem changes:
    a typo that stems like the right word would not test fuzzy matching at all."""
    for _ in range(50):
        i = rng.randrange(1, len(word) - 1)
        kind = rng.choice(("delete", "swap", "replace", "double"))
        if kind == "delete":
            typo = word[:i] + word[i + 1:]
        elif kind == "swap":
            typo = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        elif kind == "replace":
            typo = word[:i] + rng.choice(_LETTERS.replace(word[i], "")) + word[i + 1:]
        else:
            typo = word[:i] + word[i] + word[i:]
        if typo != word and terms(typo) and terms(typo) != terms(word):
            return typo
    return None


def _city(rng: random.Random) -> tuple[str, float, float]:
    name, lat, lon, _ = rng.choices(CITIES, weights=[c[3] for c in CITIES])[0]
    return name, lat, lon


class QueryMaker:
    """Seeded requests of each class, from the catalog's vocabulary."""

    def __init__(self, rng: random.Random, categories: CategoryTree, weekend: tuple[datetime, datetime]) -> None:
        self.rng = rng
        self.categories = categories
        self.weekend = weekend
        self.words = vocabulary()
        self.long_words = [w for w in self.words if len(w.text) >= 6]
        self.titles = [(item, name) for item in ITEMS for name in item.names]
        self.forms = {w.text: w.forms for w in self.words}

    def word(self) -> tuple[Word, str]:
        word = self.rng.choice(self.words)
        return word, self.rng.choice(word.forms)

    def two_words(self) -> str:
        """Two words of one title (so they co-occur), each in another form when there is one."""
        while True:
            _, name = self.rng.choice(self.titles)
            usable = [w for w in _WORD.findall(name.lower()) if len(w) >= 2 and terms(w)]
            if len(usable) >= 2:
                break
        picked = sorted(self.rng.sample(range(len(usable)), 2))
        out = []
        for index in picked:
            word = usable[index]
            forms = self.forms.get(word)
            out.append(self.rng.choice(forms) if forms and self.rng.random() < 0.7 else word)
        return " ".join(out)

    def typo(self) -> str:
        while True:
            word = self.rng.choice(self.long_words)
            spelled = self.rng.choice([word.text, *[f for f in word.forms if len(f) >= 6]])
            typo = _typo(spelled, self.rng)
            if typo is not None:
                return typo

    def filtered(self) -> SearchRequest:
        word, form = self.word()
        item = self.rng.choice(word.items)
        chosen = self.rng.sample(["category", "price", "city", "instant_book"], k=self.rng.randint(1, 3))
        low, high = item.price_rub
        category = item.category_id
        parent = self.categories.by_id[category].parent_id
        if parent is not None and self.rng.random() < 0.5:
            category = parent  # a parent category must match its children's listings
        return SearchRequest(
            q=form,
            category=category if "category" in chosen else None,
            price_min=self.rng.randint(low // 2, low) * 100 if "price" in chosen else None,
            price_max=self.rng.randint(low, high) * 100 if "price" in chosen else None,
            city=_city(self.rng)[0] if "city" in chosen else None,
            instant_book=True if "instant_book" in chosen else None,
        )

    def near(self) -> SearchRequest:
        _, lat, lon = _city(self.rng)
        point = Point(round(lat + self.rng.uniform(-0.03, 0.03), 5), round(lon + self.rng.uniform(-0.05, 0.05), 5),
                      radius_km=float(self.rng.randint(5, 20)))
        return SearchRequest(q=self.word()[1], near=point, sort="distance")

    def make(self, per_class: int) -> list[Query]:
        words = [self.word()[1] for _ in range(per_class)]
        makers: dict[str, Callable[[int], SearchRequest]] = {
            "word": lambda i: SearchRequest(q=words[i], facets=False),
            "two words": lambda _: SearchRequest(q=self.two_words()),
            "typo": lambda _: SearchRequest(q=self.typo()),
            "filters": lambda _: self.filtered(),
            # The very same texts as "word": the difference between the two rows is the facets.
            "facets": lambda i: SearchRequest(q=words[i]),
            "geo": lambda _: self.near(),
            "availability": lambda _: SearchRequest(q=self.word()[1], available=self.weekend),
        }
        return [Query(kind, makers[kind](i)) for kind in CLASSES for i in range(per_class)]


def next_weekend(now: datetime) -> tuple[datetime, datetime]:
    """[next Saturday, next Monday) in Moscow days, as a renter would pick it."""
    today = local_day(now)
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    return day_start(saturday), day_start(saturday + timedelta(days=2))


# ============================================================================ synthetic holds


@dataclass(frozen=True)
class HeldUnit:
    listing_id: uuid.UUID
    rental_id: str
    unit: int
    start: datetime
    until: datetime


def synthetic_holds(listings: list[tuple[uuid.UUID, int]], weekend: tuple[datetime, datetime],
                    rng: random.Random) -> list[HeldUnit]:
    """Holds on ~20 % of the listings: most overlap the weekend, some end exactly when it starts or
    start after it ends (they must not exclude the listing), and a multi-unit listing sometimes
    keeps a unit free (it stays available)."""
    saturday = weekend[0]
    patterns = (  # (weight, start, until) relative to Saturday 00:00
        (50, timedelta(hours=-6), timedelta(hours=58)),
        (20, timedelta(hours=10), timedelta(hours=44)),
        (15, timedelta(hours=60), timedelta(hours=96)),
        (15, timedelta(hours=-48), timedelta(0)),
    )
    held = []
    for listing_id, quantity in rng.sample(listings, int(len(listings) * _HELD_SHARE)):
        _, start, until = rng.choices(patterns, weights=[p[0] for p in patterns])[0]
        units = quantity if quantity == 1 or rng.random() < 0.7 else rng.randint(1, quantity - 1)
        rental_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        held += [HeldUnit(listing_id, rental_id, unit, saturday + start, saturday + until)
                 for unit in range(1, units + 1)]
    return held


def load_holds(book: AvailabilityBook, held: list[HeldUnit], quantities: dict[uuid.UUID, int]) -> None:
    by_listing: dict[uuid.UUID, list[tuple[str, int, datetime, datetime]]] = {}
    for h in held:
        by_listing.setdefault(h.listing_id, []).append((h.rental_id, h.unit, h.start, h.until))
    for listing_id, holds in by_listing.items():
        book.load(listing_key(listing_id), quantity=quantities[listing_id], blocked_periods=[], holds=holds,
                  as_of=("", 0))


# ============================================================================ the baseline


_SETUP = (
    # Stored, so a query reads the vector instead of parsing both texts per row.
    """ALTER TABLE listings ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
           setweight(to_tsvector('russian', title), 'A') || setweight(to_tsvector('russian', description), 'B')
       ) STORED""",
    "CREATE INDEX listings_search_tsv ON listings USING gin (search_tsv)",
    "CREATE INDEX listings_lat_lon ON listings (lat, lon) WHERE status = 'published'",
)
_HOLDS_SETUP = (
    f"CREATE TABLE {HOLDS_TABLE} (listing_id uuid NOT NULL, unit_no integer NOT NULL, period tstzrange NOT NULL)",
    f"CREATE INDEX {HOLDS_TABLE}_listing ON {HOLDS_TABLE} (listing_id)",
)
_COLUMNS = """l.id, l.owner_id, l.title, l.description, l.category_id, l.city, l.lat, l.lon, l.rental_unit,
    l.price_per_unit, l.instant_book, l.created_at, l.photos"""
_TITLE_HEADLINE = "HighlightAll=true, StartSel=<b>, StopSel=</b>"
_DESCRIPTION_HEADLINE = "MaxWords=30, MinWords=15, MaxFragments=1, StartSel=<b>, StopSel=</b>"
# JIT would compile for longer than these queries run. asyncpg prepares every statement, and after
# five runs Postgres may switch a statement to one generic plan for all parameter values: for text
# search the best plan depends on the words (how common) and the box (how full), and the generic
# plan made geo queries ~10x slower when tried; so every execution is planned for its values.
BASELINE_SETTINGS = {"jit": "off", "plan_cache_mode": "force_custom_plan"}
_BAND_LIMITS = [low for low, _ in PRICE_BANDS[1:]]  # width_bucket's thresholds: bucket i = PRICE_BANDS[i]


async def prepare_baseline(pool: asyncpg.Pool, held: list[HeldUnit]) -> float:
    """The tsvector column, its GIN index, the (lat, lon) index and the holds table; seconds taken
    by the text index (the baseline's counterpart of the rebuild)."""
    started = time.perf_counter()
    for statement in _SETUP:
        await pool.execute(statement)
    took = time.perf_counter() - started
    for statement in _HOLDS_SETUP:
        await pool.execute(statement)
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(HOLDS_TABLE, columns=["listing_id", "unit_no", "period"], records=[
            (h.listing_id, h.unit, asyncpg.Range(h.start, h.until)) for h in held])
    await pool.execute("VACUUM ANALYZE listings")
    await pool.execute(f"ANALYZE {HOLDS_TABLE}")
    return took


class _Args:
    """Positional parameters: each value appended returns its `$n`."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass
class _Where:
    tsquery: str
    source: str  # the FROM clause
    conditions: list[str]
    km: str | None = None  # the distance column, when the request has a point

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions)


def _haversine(lat: str, lon: str) -> str:
    """search/geo.distance_km in SQL."""
    return (f"2 * {EARTH_RADIUS_KM} * asin(least(1.0, sqrt(sin(radians(l.lat - {lat}) / 2) ^ 2"
            f" + cos(radians({lat})) * cos(radians(l.lat)) * sin(radians(l.lon - {lon}) / 2) ^ 2)))")


def _where(request: SearchRequest, args: _Args, categories: CategoryTree) -> _Where:
    tsquery = f"websearch_to_tsquery('russian', {args(request.q)})"
    where = _Where(tsquery, "listings l", ["l.status = 'published'", f"l.search_tsv @@ {tsquery}"])
    if request.category is not None:
        path = categories.path(request.category)
        family = [cid for cid, p in categories.paths.items() if p == path or p.startswith(path + "/")]
        where.conditions.append(f"l.category_id = ANY({args(family)}::text[])")
    if request.price_min is not None:
        where.conditions.append(f"l.price_per_unit >= {args(request.price_min)}")
    if request.price_max is not None:
        where.conditions.append(f"l.price_per_unit <= {args(request.price_max)}")
    if request.city:
        where.conditions.append(f"l.city = {args(request.city)}")
    if request.instant_book is not None:
        where.conditions.append(f"l.instant_book = {args(request.instant_book)}")
    near = request.near
    if near is not None and near.radius_km is not None:
        box = bounding_box(near.lat, near.lon, near.radius_km)  # the box the engine uses too
        lat, lon = args(near.lat), args(near.lon)
        where.source += f" CROSS JOIN LATERAL (SELECT {_haversine(f'{lat}::float8', f'{lon}::float8')} AS km) d"
        where.km = "d.km"
        where.conditions += [f"l.lat BETWEEN {args(box.min_lat)} AND {args(box.max_lat)}",
                             f"l.lon BETWEEN {args(box.min_lon)} AND {args(box.max_lon)}",
                             f"d.km <= {args(near.radius_km)}"]
    if request.available is not None:
        # Booked out = every unit has a hold overlapping the period (AvailabilityBook's rule).
        start, end = args(request.available[0]), args(request.available[1])
        where.conditions.append(
            f"l.quantity > (SELECT count(DISTINCT h.unit_no) FROM {HOLDS_TABLE} h"  # noqa: S608 - constant text
            f" WHERE h.listing_id = l.id AND h.period && tstzrange({start}, {end}))")
    return where


@dataclass(frozen=True)
class Statement:
    sql: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class BaselineQuery:
    page: Statement
    facets: Statement | None


def _page_statement(request: SearchRequest, categories: CategoryTree) -> Statement:
    args = _Args()
    where = _where(request, args, categories)
    by_distance = request.sort == "distance" and where.km is not None
    inner_order, outer_order = ("d.km, l.id", "p.km, p.id") if by_distance else ("rank DESC, l.id", "p.rank DESC, p.id")
    limit, offset = args(request.per_page), args((request.page - 1) * request.per_page)
    # count(*) OVER () is taken before the LIMIT: the total in the same scan as the page; the
    # headlines (expensive) only for the rows of the page.
    sql = f"""SELECT p.*, ts_headline('russian', p.title, {where.tsquery}, '{_TITLE_HEADLINE}') AS title_html,
                     ts_headline('russian', p.description, {where.tsquery}, '{_DESCRIPTION_HEADLINE}') AS snippet
              FROM (SELECT {_COLUMNS}, ts_rank(l.search_tsv, {where.tsquery}) AS rank,
                           {where.km or 'NULL::float8'} AS km, count(*) OVER () AS total
                    FROM {where.source} WHERE {where.sql}
                    ORDER BY {inner_order} LIMIT {limit} OFFSET {offset}) p
              ORDER BY {outer_order}"""  # noqa: S608 - only our own fragments; values are $n parameters
    return Statement(sql, tuple(args.values))


def _facet_statement(request: SearchRequest, categories: CategoryTree) -> Statement:
    args = _Args()
    where = _where(request, args, categories)
    band = f"width_bucket(l.price_per_unit, {args(_BAND_LIMITS)}::bigint[])"
    sql = f"""SELECT GROUPING(l.category_id) AS is_band, l.category_id, {band} AS band, count(*) AS n
              FROM {where.source} WHERE {where.sql}
              GROUP BY GROUPING SETS ((l.category_id), ({band}))"""  # noqa: S608 - as above
    return Statement(sql, tuple(args.values))


def compile_baseline(request: SearchRequest, categories: CategoryTree) -> BaselineQuery:
    facets = _facet_statement(request, categories) if request.facets else None
    return BaselineQuery(_page_statement(request, categories), facets)


def _facets(rows: list[asyncpg.Record], categories: CategoryTree) -> dict[str, Any]:
    """The facet rows as the engine returns facets: category counts rolled up to their parents."""
    direct: dict[str, int] = {}
    bands = [0] * len(PRICE_BANDS)
    for row in rows:
        if row["is_band"]:
            bands[row["band"]] = row["n"]
        else:
            direct[row["category_id"]] = row["n"]
    return {"categories": categories.rolled_up(direct), "price_bands": bands}


async def run_baseline(conn: Conn, query: BaselineQuery, categories: CategoryTree) -> int:
    """One search as a Postgres-backed API would answer it (page, total, facets); the total."""
    rows = await conn.fetch(query.page.sql, *query.page.args)
    if query.facets is not None:
        _facets(await conn.fetch(query.facets.sql, *query.facets.args), categories)
    return int(rows[0]["total"]) if rows else 0


# ============================================================================ measuring


@dataclass
class Sample:
    """One class on one side in one round."""
    latencies_ms: list[float]
    qps: float


@dataclass
class Sides:
    engine: SearchEngine
    pool: asyncpg.Pool
    categories: CategoryTree
    engine_threads: int
    concurrency: int


def engine_latency(engine: SearchEngine, requests: Sequence[SearchRequest]) -> list[float]:
    latencies = []
    for request in requests:
        started = time.perf_counter()
        engine.search(request)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def engine_qps(engine: SearchEngine, requests: Sequence[SearchRequest], threads: int) -> float:
    started = time.perf_counter()
    if threads == 1:
        for request in requests:
            engine.search(request)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(engine.search, requests))
    return len(requests) / (time.perf_counter() - started)


async def baseline_latency(sides: Sides, queries: Sequence[BaselineQuery]) -> list[float]:
    latencies = []
    async with sides.pool.acquire() as conn:
        for query in queries:
            started = time.perf_counter()
            await run_baseline(conn, query, sides.categories)
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def baseline_qps(sides: Sides, queries: Sequence[BaselineQuery]) -> float:
    async def op(i: int) -> None:
        async with sides.pool.acquire() as conn:
            await run_baseline(conn, queries[i], sides.categories)

    return (await measure(op, requests=len(queries), concurrency=sides.concurrency)).ops_per_sec


async def measure_class(sides: Sides, side: str, requests: list[SearchRequest],
                        compiled: list[BaselineQuery]) -> Sample:
    if side == ENGINE:
        latencies = engine_latency(sides.engine, requests)
        return Sample(latencies, engine_qps(sides.engine, requests, sides.engine_threads))
    latencies = await baseline_latency(sides, compiled)
    return Sample(latencies, await baseline_qps(sides, compiled))


def threads_scale(engine: SearchEngine, requests: Sequence[SearchRequest]) -> float:
    """Throughput of `engine.search` in 2 threads over 1, on the same requests."""
    return engine_qps(engine, requests, 2) / engine_qps(engine, requests, 1)


def _spin(seconds: float) -> int:
    count, until = 0, time.perf_counter() + seconds
    while time.perf_counter() < until:
        count += 1
    return count


def gil_kept(engine: SearchEngine, seconds: float = 0.5) -> float:
    """How much of its speed alone a pure-Python loop keeps while another thread runs tantivy
    searches and aggregations over the whole index back to back. Near 0 if tantivy held the GIL
    during its calls; near 1 (or 0.5 on a busy 2-core machine) if it lets go. Unlike a throughput
    comparison, this does not depend on how much of `engine.search` is Python."""
    searcher, everything = engine.index.searcher(), TantivyQuery.all_query()
    aggregation = {"categories": {"terms": {"field": "category_id", "size": 1000}}}
    stop = threading.Event()

    def tantivy_loop() -> None:
        while not stop.is_set():
            searcher.search(everything, 20, count=True, order_by_field="created_at")
            searcher.aggregate(everything, aggregation)

    alone = _spin(seconds)
    thread = threading.Thread(target=tantivy_loop)
    thread.start()
    try:
        shared = _spin(seconds)
    finally:
        stop.set()
        thread.join()
    return shared / alone


# ============================================================================ results


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


@dataclass(frozen=True)
class Stats:
    p50: float
    p99: float
    qps: float


def combine(samples: Sequence[Sample]) -> Sample:
    """Several classes of one round as one: all their latencies; queries over the time they took."""
    count = sum(len(s.latencies_ms) for s in samples)
    seconds = sum(len(s.latencies_ms) / s.qps for s in samples)
    return Sample([ms for s in samples for ms in s.latencies_ms], count / seconds)


def over_rounds(rounds: Sequence[Sample]) -> Stats:
    return Stats(statistics.median(percentile(s.latencies_ms, 0.5) for s in rounds),
                 statistics.median(percentile(s.latencies_ms, 0.99) for s in rounds),
                 statistics.median(s.qps for s in rounds))


@dataclass
class Setup:
    published: int = 0
    seed_s: float = 0.0
    build_s: float = 0.0
    merge_s: float = 0.0
    index_bytes: int = 0
    baseline_index_s: float = 0.0
    gin_bytes: int = 0
    held_listings: int = 0
    booked_out: dict[str, int] = field(default_factory=dict)
    gil_kept: float = 0.0  # see gil_kept()
    threads_scale: float = 0.0  # engine.search in 2 threads / in 1
    engine_threads: int = 1


@dataclass
class Results:
    setup: Setup
    per_class: int
    rounds: dict[str, dict[str, list[Sample]]]  # side -> class -> one sample per round
    totals: dict[str, dict[str, list[int]]]  # side -> class -> hits per query

    def stats(self, side: str, kinds: Iterable[str]) -> Stats:
        kinds = list(kinds)
        by_round = zip(*(self.rounds[side][k] for k in kinds), strict=True)
        return over_rounds([combine(samples) for samples in by_round])

    def recall(self, side: str) -> int:
        return sum(1 for total in self.totals[side]["typo"] if total > 0)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def print_setup(opts: Options, s: Setup) -> None:
    print(f"\nShareHub {revision()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"corpus: {opts.listings} listings seeded ({s.published} published, indexed) in {s.seed_s:.1f} s")
    print(f"engine index: full rebuild {s.build_s:.1f} s ({s.published / s.build_s:,.0f} docs/s), merges settled "
          f"{s.merge_s:.1f} s later, {_mb(s.index_bytes)} on disk")
    print(f"baseline index: tsvector column + GIN in {s.baseline_index_s:.1f} s, GIN {_mb(s.gin_bytes)}")
    print(f"availability: holds on {s.held_listings} listings; booked out for the weekend: "
          f"engine {s.booked_out[ENGINE]}, baseline {s.booked_out[BASELINE]}")
    mode = f"{s.engine_threads} threads" if s.engine_threads > 1 else "1 thread (sequential)"
    released = "releases" if s.gil_kept > _GIL_RELEASED else "does NOT release"
    print(f"engine QPS with {mode}: tantivy {released} the GIL (a Python loop kept {s.gil_kept:.0%} of its speed "
          f"while another thread searched); 2 threads did {s.threads_scale:.2f}x the searches of 1 on the probe")


def _row(name: str, facets: str, engine: Stats, base: Stats, hits: tuple[float, float]) -> str:
    return (f"{name:<13} {facets:>6} | {engine.p50:>7.2f} {engine.p99:>7.2f} {engine.qps:>7.0f} | "
            f"{base.p50:>7.2f} {base.p99:>7.2f} {base.qps:>7.0f} | {base.p50 / engine.p50:>5.1f}x "
            f"{base.p99 / engine.p99:>5.1f}x {engine.qps / base.qps:>5.1f}x | {hits[0]:>8.1f} {hits[1]:>8.1f}")


def print_table(opts: Options, r: Results) -> None:
    threads = "2 threads" if r.setup.engine_threads > 1 else "1 thread"
    print(f"\nper class: {r.per_class} queries each, medians of {opts.rounds} rounds; latency in ms; QPS: engine in "
          f"{threads}, baseline with {opts.concurrency} in flight;\nratios: latency baseline/engine, "
          f"QPS engine/baseline")
    print(f"{'class':<13} {'facets':>6} | {'engine':^23} | {'baseline (Postgres FTS)':^23} | "
          f"{'ratios':^20} | {'mean hits':^17}")
    print(f"{'':<13} {'':>6} | {'p50':>7} {'p99':>7} {'QPS':>7} | {'p50':>7} {'p99':>7} {'QPS':>7} | "
          f"{'p50':>6} {'p99':>6} {'QPS':>6} | {'engine':>8} {'baseline':>8}")
    for kind in CLASSES:
        hits = (statistics.mean(r.totals[ENGINE][kind]), statistics.mean(r.totals[BASELINE][kind]))
        print(_row(kind, "no" if kind == "word" else "yes", r.stats(ENGINE, [kind]), r.stats(BASELINE, [kind]), hits))
    for name, kinds in (("all", CLASSES), ("all w/ facets", [k for k in CLASSES if k != "word"])):
        engine_hits, base_hits = (statistics.mean(t for k in kinds for t in r.totals[side][k])
                                  for side in (ENGINE, BASELINE))
        print(_row(name, "", r.stats(ENGINE, kinds), r.stats(BASELINE, kinds), (engine_hits, base_hits)))
    print(f"\ntypo recall (queries with >= 1 hit): engine {r.recall(ENGINE)}/{r.per_class}, "
          f"Postgres FTS {r.recall(BASELINE)}/{r.per_class}")


def print_targets(opts: Options, r: Results) -> None:
    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    faceted = [k for k in CLASSES if k != "word"]
    engine, base = r.stats(ENGINE, faceted), r.stats(BASELINE, faceted)
    ratio = engine.qps / base.qps
    note = "" if opts.listings == 100_000 else f" (targets are for 100 000 listings; this run had {opts.listings})"
    print(f"\nTargets (from the tracker){note}:")
    for name, value, limit in (("p50", engine.p50, TARGET_P50_MS), ("p99", engine.p99, TARGET_P99_MS)):
        print(f"  engine {name} <= {limit:.0f} ms with facets: {value:.2f} ms - {mark(value <= limit)}")
    print(f"  engine QPS >= {TARGET_QPS_RATIO:.0f}x the baseline: {ratio:.1f}x - {mark(ratio >= TARGET_QPS_RATIO)}")
    print(f"  full rebuild <= {TARGET_REBUILD_S:.0f} s: {r.setup.build_s:.1f} s - "
          f"{mark(r.setup.build_s <= TARGET_REBUILD_S)}")
    slow = [f"{k} (p50 {s.p50:.1f}, p99 {s.p99:.1f})" for k in CLASSES
            if (s := r.stats(ENGINE, [k])).p50 > TARGET_P50_MS or s.p99 > TARGET_P99_MS]
    if slow:
        print(f"  classes over the latency targets on their own: {', '.join(slow)}")


# ============================================================================ the run


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def build_engine(pool: asyncpg.Pool, index_dir: Path, setup: Setup) -> tuple[SearchEngine, CategoryTree]:
    published = int(await pool.fetchval("SELECT count(*) FROM listings WHERE status = 'published'"))
    with Progress("index", published) as progress:
        started = time.perf_counter()
        built = await build(pool, index_dir, progress=lambda done, _: progress.advance(done - progress.done))
        setup.build_s = time.perf_counter() - started
    assert built.index is not None
    # Wait for tantivy's background merges, so they neither run during the measurements nor leave
    # the size on disk half-way; the searcher stays open (the writer is all that closes).
    started = time.perf_counter()
    built.index.close()
    setup.merge_s = time.perf_counter() - started
    setup.published, setup.index_bytes = built.documents, _directory_bytes(index_dir)
    return SearchEngine(built.index, built.book, built.categories), built.categories


async def add_holds(pool: asyncpg.Pool, engine: SearchEngine, weekend: tuple[datetime, datetime],
                    rng: random.Random, setup: Setup) -> list[HeldUnit]:
    rows = await pool.fetch("SELECT id, quantity FROM listings WHERE status = 'published' ORDER BY id")
    listings = [(row["id"], row["quantity"]) for row in rows]
    held = synthetic_holds(listings, weekend, rng)
    load_holds(engine.book, held, dict(listings))
    setup.held_listings = len({h.listing_id for h in held})
    setup.booked_out[ENGINE] = len(engine.book.unavailable(*weekend))
    return held


async def count_booked_out(pool: asyncpg.Pool, weekend: tuple[datetime, datetime]) -> int:
    return int(await pool.fetchval(
        f"""SELECT count(*) FROM listings l WHERE l.status = 'published' AND l.quantity <= (
               SELECT count(DISTINCT h.unit_no) FROM {HOLDS_TABLE} h
               WHERE h.listing_id = l.id AND h.period && tstzrange($1, $2))""", *weekend))  # noqa: S608


async def warm_up(sides: Sides, queries: list[Query], compiled: list[BaselineQuery]
                  ) -> dict[str, dict[str, list[int]]]:
    """Every query once on each side (caches, prepared statements); their totals are the hits."""
    totals: dict[str, dict[str, list[int]]] = {ENGINE: {k: [] for k in CLASSES}, BASELINE: {k: [] for k in CLASSES}}
    with Progress("warm-up", len(queries)) as progress:
        async with sides.pool.acquire() as conn:
            for query, statements in zip(queries, compiled, strict=True):
                totals[ENGINE][query.kind].append(sides.engine.search(query.request).total)
                totals[BASELINE][query.kind].append(await run_baseline(conn, statements, sides.categories))
                progress.advance()
    # Once more through the whole pool: every connection prepares its statements before timing.
    await baseline_qps(sides, compiled)
    return totals


async def run_rounds(sides: Sides, queries: list[Query], compiled: list[BaselineQuery], rounds: int
                     ) -> dict[str, dict[str, list[Sample]]]:
    samples: dict[str, dict[str, list[Sample]]] = {ENGINE: {k: [] for k in CLASSES},
                                                   BASELINE: {k: [] for k in CLASSES}}
    for round_no in range(rounds):
        order = (ENGINE, BASELINE) if round_no % 2 == 0 else (BASELINE, ENGINE)
        for kind in CLASSES:
            picked = [i for i, q in enumerate(queries) if q.kind == kind]
            requests, statements = [queries[i].request for i in picked], [compiled[i] for i in picked]
            for side in order:
                samples[side][kind].append(await measure_class(sides, side, requests, statements))
            e, b = samples[ENGINE][kind][-1], samples[BASELINE][kind][-1]
            print(f"  round {round_no + 1}/{rounds} {kind:<13} engine p50 {percentile(e.latencies_ms, 0.5):6.2f} ms "
                  f"{e.qps:6.0f}/s   baseline p50 {percentile(b.latencies_ms, 0.5):7.2f} ms {b.qps:6.0f}/s",
                  file=sys.stderr)
    return samples


async def run(opts: Options) -> Results:
    setup = Setup()
    rng = random.Random(opts.seed)
    weekend = next_weekend(datetime.now(UTC))
    with throwaway_stack() as urls, tempfile.TemporaryDirectory(prefix="shr-search-") as tmp:
        await migrate(urls.database_url, load_settings().migrations_dir)
        pool = await create_pool(urls.database_url, max_size=2)
        started = time.perf_counter()
        await seed_database(pool, users=opts.users, listings=opts.listings, seed=opts.seed)
        setup.seed_s = time.perf_counter() - started
        engine, categories = await build_engine(pool, Path(tmp) / "index", setup)
        held = await add_holds(pool, engine, weekend, rng, setup)
        print("baseline: tsvector, GIN and holds...", file=sys.stderr)
        setup.baseline_index_s = await prepare_baseline(pool, held)
        setup.gin_bytes = int(await pool.fetchval("SELECT pg_relation_size('listings_search_tsv')"))
        setup.booked_out[BASELINE] = await count_booked_out(pool, weekend)
        await pool.close()
        per_class = max(1, opts.queries // len(CLASSES))
        queries = QueryMaker(rng, categories, weekend).make(per_class)
        compiled = [compile_baseline(q.request, categories) for q in queries]
        baseline_pool = await asyncpg.create_pool(urls.database_url, min_size=opts.concurrency,
                                                  max_size=opts.concurrency, server_settings=BASELINE_SETTINGS)
        try:
            sides = Sides(engine, baseline_pool, categories, 1, opts.concurrency)
            totals = await warm_up(sides, queries, compiled)
            setup.gil_kept = gil_kept(engine)
            setup.threads_scale = threads_scale(engine, [q.request for q in queries if q.kind == "facets"])
            setup.engine_threads = opts.engine_threads or (2 if setup.gil_kept > _GIL_RELEASED else 1)
            sides.engine_threads = setup.engine_threads
            samples = await run_rounds(sides, queries, compiled, opts.rounds)
        finally:
            await baseline_pool.close()
    return Results(setup, per_class, samples, totals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=5_000, help="owners the listings are spread over")
    parser.add_argument("--queries", type=int, default=700, help="in all, split evenly over the 7 classes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=4, help="baseline queries in flight for its QPS")
    parser.add_argument("--engine-threads", type=int, choices=[1, 2], help="default: 2 if tantivy releases the GIL")
    parser.add_argument("--smoke", action="store_true", help="2 000 listings, 200 users, 70 queries, 1 round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.listings, args.users, args.queries, args.rounds = 2_000, 200, 70, 1
    opts = Options(args.listings, args.users, args.queries, args.rounds, args.seed, args.concurrency,
                   args.engine_threads)
    results = uvloop.run(run(opts))
    print_setup(opts, results.setup)
    print_table(opts, results)
    print_targets(opts, results)


if __name__ == "__main__":
    main()

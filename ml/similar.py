"""Similar listings: for a listing, the k most similar other listings (the available ones, when
the caller says which are).

Similarity blends what a listing says and what renters did:
- content: cosine of TF-IDF vectors over the search index's analysed terms (Russian stemming,
  so "палатка" and "палатки" are one term), the same category (its parent counts half), a
  price close on a log scale, and nearness (renters rent near home);
- co-interest: how many renters who booked this listing also booked the other one, scaled by
  the listing's own bookings (a listing with many renters votes with many).
A listing nobody booked yet (cold start) gets neighbours from content alone. Everything is a
sparse matrix product plus numpy, so one query over 100 000 listings takes milliseconds."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import sparse

from search.analysis import terms
from search.geo import distances_km

DISTANCE_SCALE_KM = 30.0


@dataclass(frozen=True)
class SimilarWeights:
    """Weights of the parts of the score; training (ml/training.py) picks them on held-out
    co-bookings, and a model version is these weights."""
    text: float = 0.55
    category: float = 0.2
    price: float = 0.15
    distance: float = 0.1
    co_interest: float = 0.6

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SimilarWeights:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class ListingContent:
    id: str
    title: str
    description: str
    category_id: str
    parent_category_id: str | None
    price_per_unit: int
    lat: float
    lon: float
    rental_unit: str = "day"


class SimilarListings:
    def __init__(self, listings: Sequence[ListingContent], bookings: Iterable[tuple[str, str]] = (),
                 weights: SimilarWeights | None = None, *, text: TextSpace | None = None) -> None:
        """`bookings`: (renter id, listing id) pairs from the rental history; `text`: the TF-IDF
        rows of these same listings, when another index already analysed them (training tries
        many weights on one catalogue)."""
        self.weights = weights or SimilarWeights()
        self.listings = list(listings)
        self.position = {listing.id: i for i, listing in enumerate(self.listings)}
        self.text = text if text is not None else TextSpace.of(
            [terms(f"{listing.title} {listing.description}") for listing in self.listings])
        self._text = self.text.matrix
        self._category = np.array([listing.category_id for listing in self.listings], dtype=object)
        self._parent = np.array([listing.parent_category_id or listing.category_id for listing in self.listings],
                                dtype=object)
        self._parent_of = {listing.category_id: listing.parent_category_id or listing.category_id
                           for listing in self.listings}
        self._unit = np.array([listing.rental_unit for listing in self.listings], dtype=object)
        self._log_price = np.log(np.array([max(1, listing.price_per_unit) for listing in self.listings], dtype=float))
        self._lat = np.array([listing.lat for listing in self.listings], dtype=float)
        self._lon = np.array([listing.lon for listing in self.listings], dtype=float)
        self._co = _co_interest(bookings, self.position, len(self.listings))

    def with_history(self, bookings: Iterable[tuple[str, str]], weights: SimilarWeights) -> SimilarListings:
        """The same catalogue with other bookings and weights, without analysing the text again."""
        return SimilarListings(self.listings, bookings, weights, text=self.text)

    def scores(self, listing_id: str) -> np.ndarray:
        """Similarity of every listing to this one (itself included; the caller leaves it out)."""
        i = self.position[listing_id]
        score = self._content_scores(self._text[i], self._category[i], self._parent[i], self._log_price[i],
                                     lat=self._lat[i], lon=self._lon[i])
        row = self._co.getrow(i)
        if row.nnz and self.weights.co_interest:
            co = np.zeros(len(self.listings))
            co[row.indices] = row.data / row.data.max()
            score += self.weights.co_interest * co
        return score

    def _content_scores(self, text_row: sparse.csr_matrix, category: str, parent: str, log_price: float, *,
                        lat: float, lon: float) -> np.ndarray:
        text = np.asarray((self._text @ text_row.T).todense()).ravel()
        same = np.where(self._category == category, 1.0, np.where(self._parent == parent, 0.5, 0.0))
        price = np.exp(-np.abs(self._log_price - log_price))
        nearness = np.exp(-distances_km(lat, lon, self._lat, self._lon) / DISTANCE_SCALE_KM)
        w = self.weights
        score: np.ndarray = w.text * text + w.category * same + w.price * price + w.distance * nearness
        return score

    def similar_to(self, listing: ListingContent, k: int) -> list[tuple[str, float]]:
        """The k listings most similar to one this index has not seen (published since it was
        built): by content alone, in the index's own text space - the cold start, at once."""
        if not self.listings:
            return []
        score = self._content_scores(self.text.vector(terms(f"{listing.title} {listing.description}")),
                                     listing.category_id, listing.parent_category_id
                                     or self._parent_of.get(listing.category_id, listing.category_id),
                                     float(np.log(max(1, listing.price_per_unit))), lat=listing.lat, lon=listing.lon)
        top = np.argsort(-score, kind="stable")[:k + 1]
        return [(self.listings[j].id, float(score[j])) for j in top.tolist() if self.listings[j].id != listing.id][:k]

    def similar(self, listing_id: str, k: int, *, available: Mapping[str, bool] | set[str] | None = None
                ) -> list[tuple[str, float]]:
        """The k most similar listings, best first; only `available` ones when given."""
        score = self.scores(listing_id)
        score[self.position[listing_id]] = -np.inf
        if available is not None:
            allowed = np.array([listing.id in available and (not isinstance(available, Mapping)
                                                              or available[listing.id])
                                for listing in self.listings])
            score[~allowed] = -np.inf
        top = np.argsort(-score, kind="stable")[:k]
        return [(self.listings[j].id, float(score[j])) for j in top.tolist() if np.isfinite(score[j])]

    def like_text(self, text: str, category_id: str, rental_unit: str, k: int) -> list[tuple[ListingContent, float]]:
        """The k listings of the category (and rental unit) whose text is nearest to `text` - a
        draft's comparables, found by what it is ("Sony A7 III" among cameras), not only where."""
        if not self.listings:
            return []
        words = terms(text)
        score = np.asarray((self._text @ self.text.vector(words).T).todense()).ravel()
        score[(self._category != category_id) | (self._unit != rental_unit)] = -np.inf
        top = np.argsort(-score, kind="stable")[:k]
        return [(self.listings[j], float(score[j])) for j in top.tolist() if np.isfinite(score[j])]


@dataclass(frozen=True)
class TextSpace:
    """TF-IDF rows of the catalogue (L2-normalised), with the vocabulary and IDF they were built
    with, so a text that is not in the catalogue (a draft's title) lands in the same space."""
    vocabulary: dict[str, int]
    idf: np.ndarray
    matrix: sparse.csr_matrix

    @classmethod
    def of(cls, documents: list[list[str]]) -> TextSpace:
        vocabulary: dict[str, int] = {}
        frequency: Counter[int] = Counter()
        for words in documents:
            frequency.update({vocabulary.setdefault(word, len(vocabulary)) for word in words})
        n = max(1, len(documents))
        idf = np.array([math.log((1 + n) / (1 + frequency[col])) + 1.0 for col in range(len(vocabulary))])
        space = cls(vocabulary, idf, sparse.csr_matrix((0, 0)))
        rows = [space._weights(words) for words in documents]
        indptr = np.cumsum([0, *(len(cols) for cols, _ in rows)])
        matrix = sparse.csr_matrix(
            (np.concatenate([v for _, v in rows]) if rows else np.zeros(0),
             np.concatenate([c for c, _ in rows]).astype(np.int64) if rows else np.zeros(0, dtype=np.int64), indptr),
            shape=(len(documents), max(1, len(vocabulary))))
        return cls(vocabulary, idf, matrix)

    def _weights(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(columns, weights) of one document: (1 + log tf) x idf over its known words, unit length."""
        counts = Counter(self.vocabulary[word] for word in words if word in self.vocabulary)
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        values = np.array([(1.0 + math.log(count)) * self.idf[col] for col, count in counts.items()])
        norm = float(np.sqrt(values @ values)) if len(values) else 0.0
        return cols, values / norm if norm else values

    def vector(self, words: list[str]) -> sparse.csr_matrix:
        cols, values = self._weights(words)
        return sparse.csr_matrix((values, (np.zeros(len(cols), dtype=np.int64), cols)),
                                 shape=(1, self.matrix.shape[1]))


def _co_interest(bookings: Iterable[tuple[str, str]], position: Mapping[str, int], n: int) -> sparse.csr_matrix:
    """[a, b]: renters who booked both a and b (a != b)."""
    by_renter: dict[str, set[int]] = defaultdict(set)
    for renter, listing in bookings:
        if listing in position:
            by_renter[renter].add(position[listing])
    pairs: Counter[tuple[int, int]] = Counter()
    for booked in by_renter.values():
        for a in booked:
            for b in booked:
                if a != b:
                    pairs[(a, b)] += 1
    if not pairs:
        return sparse.csr_matrix((n, n))
    (a_idx, b_idx), counts = zip(*pairs.keys(), strict=True), list(pairs.values())
    return sparse.csr_matrix((counts, (a_idx, b_idx)), shape=(n, n))

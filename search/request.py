"""A search as the engine takes it, already validated (the gateway parses query parameters into
it, search/params.py), and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Sort = Literal["relevance", "price_asc", "price_desc", "newest", "distance"]
MAX_PER_PAGE = 50
# Deep pages cost the sum of all pages before them; nobody reads result 10 001 of a search.
MAX_RESULT_WINDOW = 10_000


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float
    radius_km: float | None = None


@dataclass(frozen=True)
class SearchRequest:
    q: str = ""
    category: str | None = None
    price_min: int | None = None  # kopecks per rental unit, both ends included
    price_max: int | None = None
    city: str | None = None
    near: Point | None = None
    # [from, to): the renter's period; listings with no unit free for all of it are left out.
    available: tuple[datetime, datetime] | None = None
    instant_book: bool | None = None
    sort: Sort = "relevance"
    page: int = 1
    per_page: int = 20
    facets: bool = True


@dataclass
class SearchResult:
    total: int
    items: list[dict[str, Any]]
    facets: dict[str, Any] = field(default_factory=dict)
    took_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "items": self.items, "facets": self.facets, "took_ms": round(self.took_ms, 2)}


class UnknownCategory(ValueError):
    pass

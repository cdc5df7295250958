"""A listing as the search index holds it.

Only published listings are searchable: a draft, a listing under review, a paused or archived
one is not in the index (the consumer deletes it by id when it leaves `published`). The category
is stored as its path from the root (`/tools/power-tools`): a filter on `/tools` then matches
every child, and facet counts come per level."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tantivy import Document, Facet

SEARCHABLE_STATUSES = frozenset({"published"})


def category_paths(categories: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{category id: "/root/.../id"} from rows with `id` and `parent_id`."""
    parents = {row["id"]: row["parent_id"] for row in categories}
    paths: dict[str, str] = {}
    for category in parents:
        chain, current, seen = [], category, set()
        while current is not None and current not in seen:  # a cycle would be a data bug: stop
            seen.add(current)
            chain.append(current)
            current = parents.get(current)
        paths[category] = "/" + "/".join(reversed(chain))
    return paths


def listing_key(listing_id: str | uuid.UUID) -> int:
    """A listing's number in the index: the top 63 bits of its UUID (a positive i64; any two of a
    million listings share one with odds of about 1 in 20 million)."""
    value = listing_id if isinstance(listing_id, uuid.UUID) else uuid.UUID(str(listing_id))
    return value.int >> 65


def price_order(price: int, key: int) -> int:
    """The price, then the key's top 24 bits (prices stay below 2^39 kopecks, 5.5 billion roubles)."""
    return (price << 24) | (key >> 39)


def category_number(category_id: str) -> int:
    """A category as a number, the same in every replica (a CRC of its id)."""
    return zlib.crc32(category_id.encode()) & 0x7FFF_FFFF


def city_key(city: str) -> str:
    """How the city filter compares names: "москва" and "Москва " are the same city."""
    return city.strip().lower().replace("ё", "е")


def is_searchable(listing: Mapping[str, Any]) -> bool:
    return listing.get("status") in SEARCHABLE_STATUSES


def _instant(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def listing_document(listing: Mapping[str, Any], paths: Mapping[str, str], *, owner_rating: float = 0.0) -> Document:
    """The index document of a listing row (storage.listings columns)."""
    category = str(listing["category_id"])
    created = _instant(listing["created_at"])
    photos = listing.get("photos") or ()
    return Document(
        id=str(listing["id"]),
        key=listing_key(listing["id"]),
        owner_id=str(listing["owner_id"]),
        photo=str(photos[0]) if photos else "",
        title=listing["title"],
        title_words=listing["title"],
        description=listing["description"],
        category=Facet.from_string(paths.get(category, f"/{category}")),
        category_id=category,
        category_num=category_number(category),
        city=listing["city"],
        city_key=city_key(listing["city"]),
        rental_unit=listing["rental_unit"],
        price=int(listing["price_per_unit"]),
        price_order=price_order(int(listing["price_per_unit"]), listing_key(listing["id"])),
        lat=float(listing["lat"]),
        lon=float(listing["lon"]),
        owner_rating=float(owner_rating),
        instant_book=bool(listing["instant_book"]),
        created_at=created,
        created_order=int(created.timestamp() * 1_000_000),
        updated_at=_instant(listing.get("updated_at") or created),
    )

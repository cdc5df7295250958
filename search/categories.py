"""The category tree as search needs it: each category's path (the facet a listing is indexed
under), its parent (facet counts roll up to it) and its names (suggestions match them)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from search.documents import category_number, category_paths

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Category:
    id: str
    parent_id: str | None
    name_ru: str
    name_en: str
    path: str


class CategoryTree:
    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        paths = category_paths(rows)
        self.by_id = {
            row["id"]: Category(row["id"], row["parent_id"], row.get("name_ru", row["id"]),
                                row.get("name_en", row["id"]), paths[row["id"]])
            for row in rows
        }
        self.paths = paths
        self.by_number = {category_number(category_id): category_id for category_id in self.by_id}

    def __contains__(self, category_id: object) -> bool:
        return category_id in self.by_id

    def path(self, category_id: str) -> str:
        return self.paths.get(category_id, f"/{category_id}")

    def rolled_up(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Per-category counts of listings directly in it -> counts including its descendants."""
        total: dict[str, int] = {}
        for category_id, count in counts.items():
            for ancestor in self.path(category_id).strip("/").split("/"):
                total[ancestor] = total.get(ancestor, 0) + count
        return total

    def named_like(self, prefix: str, limit: int) -> list[Category]:
        """Categories with a word of either name starting with `prefix` (case-insensitive)."""
        prefix = prefix.lower().replace("ё", "е")
        if not prefix:
            return []
        found = []
        for category in self.by_id.values():
            words = _WORD.findall(f"{category.name_ru} {category.name_en}".lower().replace("ё", "е"))
            if any(word.startswith(prefix) for word in words):
                found.append(category)
        found.sort(key=lambda c: (c.path.count("/"), c.name_ru))
        return found[:limit]

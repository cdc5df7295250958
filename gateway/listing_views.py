"""How a listing looks on the wire. Its owner and moderators see everything, including an edit
waiting for review; everyone else sees the public version of a published or paused listing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from actors.periods import UNIT_LENGTH, day_start, local_day
from sharehub.security.tokens import AccessClaims

PUBLIC_STATUSES = frozenset({"published", "paused"})


def can_see_everything(listing: dict[str, Any], viewer: AccessClaims | None) -> bool:
    if viewer is None:
        return False
    return viewer.user_id == listing["owner_id"] or bool({"moderator", "admin"} & viewer.roles)


def listing_view(listing: dict[str, Any], *, full: bool) -> dict[str, Any]:
    view = {
        "id": str(listing["id"]),
        "owner_id": str(listing["owner_id"]),
        "status": listing["status"],
        "title": listing["title"],
        "description": listing["description"],
        "photos": [str(p) for p in listing["photos"]],
        "category_id": listing["category_id"],
        "attributes": listing["attributes"],
        "city": listing["city"],
        "lat": listing["lat"],
        "lon": listing["lon"],
        "rental_unit": listing["rental_unit"],
        "price_per_unit": listing["price_per_unit"],
        "currency": "RUB",
        "discounts": listing["discounts"],
        "price_overrides": listing["price_overrides"],
        "deposit": listing["deposit"],
        "quantity": listing["quantity"],
        "min_units": listing["min_units"],
        "max_units": listing["max_units"],
        "min_notice_hours": listing["min_notice_hours"],
        "buffer_hours": listing["buffer_hours"],
        "instant_book": listing["instant_book"],
        "cancellation_policy": listing["cancellation_policy"],
        "created_at": listing["created_at"].isoformat(),
        "updated_at": listing["updated_at"].isoformat(),
        "published_at": listing["published_at"].isoformat() if listing["published_at"] else None,
    }
    if full:
        view["blocked_periods"] = listing["blocked_periods"]
        view["pending_revision"] = listing["pending_revision"]
        view["rejection_reason"] = listing["rejection_reason"]
        view["version"] = listing["version"]
    return view


def _blocked_days(listing: dict[str, Any]) -> set[date]:
    days: set[date] = set()
    for period in listing["blocked_periods"]:
        day, end = date.fromisoformat(period["start"]), date.fromisoformat(period["end"])
        while day <= end:
            days.add(day)
            day += timedelta(days=1)
    return days


def availability_slots(listing: dict[str, Any], start: date, end: date) -> list[tuple[datetime, datetime]]:
    """The slots the calendar answers for, `start`..`end` inclusive: days, or hours of those days."""
    step = UNIT_LENGTH[listing["rental_unit"]]
    first, stop = day_start(start), day_start(end + timedelta(days=1))
    return [(first + step * i, first + step * (i + 1)) for i in range(int((stop - first) / step))]


def availability(listing: dict[str, Any], slots: list[tuple[datetime, datetime]], busy: list[int]) -> dict[str, Any]:
    """Free quantity per slot: blocked days take every unit, bookings (with their turnaround
    buffer) take the units they hold."""
    blocked = _blocked_days(listing)
    quantity = listing["quantity"]
    items: list[dict[str, Any]] = []
    for (slot_start, _), taken in zip(slots, busy, strict=True):
        free = 0 if local_day(slot_start) in blocked else max(quantity - taken, 0)
        if listing["rental_unit"] == "day":
            items.append({"date": local_day(slot_start).isoformat(), "free": free})
        else:
            items.append({"start": slot_start.isoformat(), "free": free})
    return {"listing_id": str(listing["id"]), "unit": listing["rental_unit"], "quantity": quantity, "items": items}

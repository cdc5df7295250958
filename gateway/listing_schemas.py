"""Request bodies for listings (validation only; lifecycle rules live in actors/listing.py)."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from gateway.bodies import Body

_TEXT = r"^[^\x00]*$"
# One line of visible text: no control characters (C0, DEL, C1), no surrounding whitespace.
_LINE = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
Title = Annotated[str, StringConstraints(min_length=3, max_length=120, pattern=_LINE)]
Description = Annotated[str, StringConstraints(min_length=10, max_length=5000, pattern=_TEXT)]
City = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_LINE)]
AttributeKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
# Values a JSON document can carry exactly everywhere (53-bit integers, finite numbers).
AttributeValue = (
    Annotated[str, StringConstraints(max_length=200, pattern=_TEXT)]
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)
Kopecks = Annotated[int, Field(ge=1, le=10_000_000_000)]  # up to 100 million roubles


class Discount(Body):
    min_units: Annotated[int, Field(ge=2, le=365)]
    percent: Annotated[int, Field(ge=1, le=90)]


class PriceOverride(Body):
    date: datetime.date
    price_per_unit: Kopecks


class _ListingOptions(Body):
    """What an owner may leave at its default when creating."""

    photos: Annotated[list[uuid.UUID], Field(max_length=20)] | None = None
    attributes: Annotated[dict[AttributeKey, AttributeValue], Field(max_length=30)] | None = None
    discounts: Annotated[list[Discount], Field(max_length=5)] | None = None
    price_overrides: Annotated[list[PriceOverride], Field(max_length=366)] | None = None
    deposit: Annotated[int, Field(ge=0, le=10_000_000_000)] | None = None
    quantity: Annotated[int, Field(ge=1, le=1000)] | None = None
    min_units: Annotated[int, Field(ge=1, le=365)] | None = None
    # null: no maximum.
    max_units: Annotated[int, Field(ge=1, le=8760)] | None = None
    min_notice_hours: Annotated[int, Field(ge=0, le=720)] | None = None
    buffer_hours: Annotated[int, Field(ge=0, le=168)] | None = None
    instant_book: bool | None = None

    def as_payload(self) -> dict[str, Any]:
        """Only what the client sent, JSON-ready (dates and UUIDs as strings)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def nulls_not_allowed(self) -> list[str]:
        return [name for name in self.model_fields_set if getattr(self, name) is None and name != "max_units"]


Category = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Policy = Literal["flexible", "moderate", "strict"]


class ListingCreate(_ListingOptions):
    title: Title
    description: Description
    category_id: Category
    city: City
    lat: Latitude
    lon: Longitude
    rental_unit: Literal["day", "hour"]
    price_per_unit: Kopecks
    cancellation_policy: Policy


class ListingPatch(_ListingOptions):
    title: Title | None = None
    description: Description | None = None
    category_id: Category | None = None
    city: City | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    rental_unit: Literal["day", "hour"] | None = None
    price_per_unit: Kopecks | None = None
    cancellation_policy: Policy | None = None


class BlockedPeriod(Body):
    start: datetime.date
    end: datetime.date


class BlockedPeriodsBody(Body):
    periods: Annotated[list[BlockedPeriod], Field(max_length=200)]


class RejectBody(Body):
    reason: Annotated[str, StringConstraints(min_length=3, max_length=1000, pattern=_TEXT)]

"""Queries and bodies of the ml-core routes (price suggestions, similar listings), and how a
listing or a draft becomes the question Ray Serve's `Pricing` deployment answers.

A period is as a rental names it: days (`2027-06-10`, both included) for a listing rented by
the day, instants with an offset for one rented by the hour. It must start in the future and be
at most MAX_PERIOD_UNITS units long."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from actors.periods import PeriodError, RentalPeriod, local_day, now_utc
from gateway.bodies import Body
from sharehub.errors import ApiError

MAX_PERIOD_UNITS = {"day": 90, "hour": 24 * 7}
_Moment = Annotated[str, StringConstraints(min_length=10, max_length=40)]
_Kopecks = Annotated[int, Field(ge=0, le=10**10)]


class PriceSuggestionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: _Moment = Field(alias="from")
    to: _Moment


class SimilarQuery(BaseModel):
    """`from`/`to` (days, both included): only listings with a unit free for all of them."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    limit: Annotated[int, Field(ge=1, le=50)] = 10
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None

    def free_days(self) -> RentalPeriod | None:
        if self.from_ is None and self.to is None:
            return None
        if self.from_ is None or self.to is None:
            raise ApiError(422, "invalid_period", "Give both `from` and `to`, or neither.")
        if self.from_ < local_day(now_utc()):
            raise ApiError(422, "invalid_period", "The days must not be in the past.")
        try:
            period = RentalPeriod.for_days(self.from_, self.to)
        except (PeriodError, OverflowError) as exc:
            raise ApiError(422, "invalid_period", str(exc) or "These dates are out of range.") from None
        if period.units > MAX_PERIOD_UNITS["day"]:
            raise ApiError(422, "invalid_period", f"Ask about at most {MAX_PERIOD_UNITS['day']} days at a time.")
        return period


class DraftPricingBody(Body):
    """A listing that does not exist yet: what the owner has filled in so far."""
    category_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
    city: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    attributes: Annotated[dict[str, str | int | float | bool], Field(max_length=50)] = Field(default_factory=dict)
    rental_unit: Literal["day", "hour"]
    price_per_unit: Annotated[int, Field(ge=100, le=10**10)] | None = None
    deposit: _Kopecks = 0
    quantity: Annotated[int, Field(ge=1, le=1000)] = 1
    instant_book: bool = False
    photos: Annotated[int, Field(ge=0, le=50)] = 0
    start: _Moment
    end: _Moment


def rental_period(unit: str, start: str, end: str) -> RentalPeriod:
    """The period asked about, or a 422 `invalid_period` saying what is wrong with it."""
    try:
        period = RentalPeriod.parse(unit, start, end)
    except PeriodError as exc:
        raise ApiError(422, "invalid_period", str(exc)) from None
    if period.start <= now_utc():
        raise ApiError(422, "invalid_period", "The period must start in the future.")
    if period.units > MAX_PERIOD_UNITS[unit]:
        raise ApiError(422, "invalid_period", f"Ask about at most {MAX_PERIOD_UNITS[unit]} {unit}s at a time.")
    return period


def price_question(facts: dict[str, Any], period: RentalPeriod, *, has_price: bool) -> dict[str, Any]:
    """What `ml.serving.Pricing` takes: the listing's facts and the period, on the wire."""
    return {"listing": facts, "start": period.start.isoformat(), "end": period.end.isoformat(),
            "asked_at": now_utc().isoformat(), "has_price": has_price}


def suggestion_view(answer: dict[str, Any], period: RentalPeriod, unit: str) -> dict[str, Any]:
    current = answer.get("current")
    return {
        "currency": "RUB",
        "rental_unit": unit,
        "period": period.wire(),
        "suggested_price": answer["price"],
        "booking_probability": answer["probability"],
        "expected_revenue": answer["expected_revenue"],
        "range": answer["range"],
        "comparable_median": answer["comparable_median"],
        "current": None if current is None else {
            "price": current["price"], "booking_probability": current["probability"],
            "expected_revenue": current["expected_revenue"]},
        "model_version": answer["model_version"],
        "stale": bool(answer.get("stale", False)),
    }


def cache_key(question: dict[str, Any]) -> str:
    """Questions that differ only in when they were asked share an answer in the stale cache."""
    listing = question["listing"]
    return "|".join(str(part) for part in (*sorted(listing.items()), question["start"], question["end"],
                                           datetime.fromisoformat(question["asked_at"]).date()))

"""The query of `GET /api/v1/search` and `/api/v1/search/suggest`, and how it becomes a
SearchRequest.

Dates: `available_from`/`available_to` are days (`2026-12-05`, both included, Moscow time, as a
day rental counts them) or instants with an offset (`2026-12-05T10:00:00+03:00`, `to` excluded,
for hourly rentals). A point needs both `lat` and `lon`; `radius_km` needs a point; sorting by
distance needs a point."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from actors.periods import day_start
from search.request import MAX_PER_PAGE, MAX_RESULT_WINDOW, Point, SearchRequest, Sort
from sharehub.errors import ApiError

_MAX_PERIOD = timedelta(days=366)
_Text = Annotated[str, StringConstraints(max_length=200)]
_Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
_Kopecks = Annotated[int, Field(ge=0, le=10**12)]


class SearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: _Text = ""
    category: _Id | None = None
    price_min: _Kopecks | None = None
    price_max: _Kopecks | None = None
    city: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    radius_km: Annotated[float, Field(gt=0, le=500)] | None = None
    available_from: date | AwareDatetime | None = None
    available_to: date | AwareDatetime | None = None
    instant_book: bool | None = None
    sort: Sort = "relevance"
    page: Annotated[int, Field(ge=1, le=MAX_RESULT_WINDOW)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 20
    facets: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> SearchQuery:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon come together")
        if self.radius_km is not None and self.lat is None:
            raise ValueError("radius_km needs lat and lon")
        if self.sort == "distance" and self.lat is None:
            raise ValueError("sort=distance needs lat and lon")
        if (self.available_from is None) != (self.available_to is None):
            raise ValueError("available_from and available_to come together")
        if self.price_min is not None and self.price_max is not None and self.price_max < self.price_min:
            raise ValueError("price_max is below price_min")
        if self.page * self.per_page > MAX_RESULT_WINDOW:
            raise ValueError(f"results beyond the first {MAX_RESULT_WINDOW} are not served; narrow the search")
        return self

    def to_request(self) -> SearchRequest:
        return SearchRequest(
            q=self.q, category=self.category, price_min=self.price_min, price_max=self.price_max, city=self.city,
            near=Point(self.lat, self.lon, self.radius_km) if self.lat is not None and self.lon is not None else None,
            available=self._period(), instant_book=self.instant_book, sort=self.sort, page=self.page,
            per_page=self.per_page, facets=self.facets,
        )

    def _period(self) -> tuple[datetime, datetime] | None:
        if self.available_from is None or self.available_to is None:
            return None
        try:
            start, end = _instant(self.available_from, end=False), _instant(self.available_to, end=True)
        except OverflowError:  # the last day of year 9999 has no end
            raise ApiError(422, "invalid_period", "These dates are out of range.") from None
        if end <= start:
            raise ApiError(422, "invalid_period", "available_to must be after available_from.")
        if end - start > _MAX_PERIOD:
            raise ApiError(422, "invalid_period", "A period of at most a year can be searched.")
        return start, end


def _instant(value: date | datetime, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value
    return day_start(value + timedelta(days=1)) if end else day_start(value)


class SuggestQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    limit: Annotated[int, Field(ge=1, le=20)] = 8

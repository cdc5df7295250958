"""Rental periods and the listing calendar's time.

Listings are rented by the day or by the hour. A day rental names its first and last day
(inclusive, as people say "from Friday to Sunday"); an hour rental names whole-hour instants with
the end exclusive. Both become one half-open interval [start, end) of aware datetimes, which is
also what `bookings.period` stores.

Calendar days are Moscow days for now: Moscow has been UTC+3 all year since 2014, so a fixed
offset is exact and needs no tz database in slim images. Per-city time zones (Yekaterinburg,
Novosibirsk, Vladivostok...) come with the city directory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

LISTING_TIME_ZONE = timezone(timedelta(hours=3), "MSK")
UNIT_LENGTH = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), LISTING_TIME_ZONE)


def local_day(moment: datetime) -> date:
    return moment.astimezone(LISTING_TIME_ZONE).date()


def now_utc() -> datetime:
    return datetime.now(UTC)


class PeriodError(ValueError):
    """A period that cannot be rented as given (the message says why)."""


@dataclass(frozen=True)
class RentalPeriod:
    unit: str  # "day" | "hour"
    start: datetime
    end: datetime  # exclusive

    @classmethod
    def for_days(cls, first: date, last: date) -> RentalPeriod:
        if last < first:
            raise PeriodError("The last day is before the first.")
        return cls("day", day_start(first), day_start(last + timedelta(days=1)))

    @classmethod
    def for_hours(cls, start: datetime, end: datetime) -> RentalPeriod:
        if start.tzinfo is None or end.tzinfo is None:
            raise PeriodError("Hourly periods need a time zone offset.")
        for moment in (start, end):
            if moment.minute or moment.second or moment.microsecond:
                raise PeriodError("Hourly periods start and end on a whole hour.")
        if end <= start:
            raise PeriodError("The end is not after the start.")
        return cls("hour", start.astimezone(UTC), end.astimezone(UTC))

    @classmethod
    def parse(cls, unit: str, start: str, end: str) -> RentalPeriod:
        """From the wire: dates for day listings, RFC 3339 date-times for hour listings."""
        try:
            if unit == "day":
                return cls.for_days(date.fromisoformat(start), date.fromisoformat(end))
            return cls.for_hours(datetime.fromisoformat(start), datetime.fromisoformat(end))
        except PeriodError:
            raise
        except (ValueError, OverflowError):  # OverflowError: a date near year 9999
            expected = "dates (YYYY-MM-DD)" if unit == "day" else "date-times with an offset"
            raise PeriodError(f"This listing is rented by the {unit}: start and end must be {expected}.") from None

    @property
    def units(self) -> int:
        return int((self.end - self.start) / UNIT_LENGTH[self.unit])

    def unit_starts(self) -> list[datetime]:
        """Each billed unit's start, in listing time (so overrides match the local date)."""
        step = UNIT_LENGTH[self.unit]
        start = self.start.astimezone(LISTING_TIME_ZONE)
        return [start + step * i for i in range(self.units)]

    def wire(self) -> dict[str, str]:
        """Back to the client's vocabulary: first and last day, or the two instants (Moscow time,
        as the availability calendar shows them)."""
        return {"start": wire_start(self.unit, self.start), "end": wire_end(self.unit, self.end)}


def wire_start(unit: str, start: datetime) -> str:
    if unit == "day":
        return local_day(start).isoformat()
    return start.astimezone(LISTING_TIME_ZONE).isoformat()


def wire_end(unit: str, end: datetime) -> str:
    """An exclusive end as the client says it: the last day of a day rental, or the instant."""
    if unit == "day":
        return (local_day(end) - timedelta(days=1)).isoformat()
    return end.astimezone(LISTING_TIME_ZONE).isoformat()


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end

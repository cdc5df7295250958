"""Rental histories for the seeded listings, stored exactly as the listing entity stores them.

Each rental is played through the real rental machine (actors/rental_machine.py): a request
priced by actors/quotes.py as `request_booking` prices it, then the owner's answer, the
handover, an extension now and then, the return and the completion, each at its own time. Steps
later than `now` have not happened yet, so histories end in every state: mostly completed (or
declined, withdrawn, cancelled, expired) over the past year, active now, requested or accepted
for the coming weeks. Written is what the listing entity would have written: the rental row, its
transitions, the bookings of the units it still holds (none once released), and the timers of
open rentals (expiry, overdue, completion), so the running system carries on from there.

Demand model (what ML can learn from the histories)
---------------------------------------------------
The rate at which a published listing receives booking requests on a day is the one in
sharehub/seed/demand.py: popularity and elasticity per category, a city factor, the price over
its category's median raised to minus the elasticity, season and weekday. Summed over its
bookable days - from the day after its publication (at most a year back) to 60 days ahead, a
future day counting only with the share of its requests already made (lead times are
exponential, 5 days on average for day rentals and 20 hours for hourly ones) - that is the
listing's share of the requests. Each request picks a listing with those weights, then its first
day with the listing's day weights. So listings priced below their category's median (more so in
elastic categories), popular categories and cities, the high season and weekends get more
bookings, and so do listings published longer ago (more exposure). Lengths, quantities, lead
times and outcomes (declines, expiries, cancellations, late returns, extensions) follow fixed
distributions that do not depend on price.
A request for units already taken is dropped and drawn again (the renter books elsewhere), so
the busiest listings saturate. Renters are the seed's users, mostly from the listing's city and
interested in its category (each has a few interests), a few of them far more active than the rest.

With 100 rentals or more, the first five are placed so that one is in each open state now
(requested, accepted, active, overdue, returned), which the draw alone gives rarely or not at all.

Deterministic: the same seed and `now` give the same rows (ids, periods, quotes, histories). The
dates are relative to `now`, so seeding on another day shifts them."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import random
import statistics
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

import asyncpg
from asyncpg import Range

from actors import rental_machine as machine
from actors.calendar import Calendar, Hold
from actors.listing import KIND as LISTING_KIND
from actors.listing_rentals import timer_name
from actors.periods import UNIT_LENGTH, RentalPeriod, day_start, local_day, overlaps
from actors.quotes import PricingTerms, quote
from actors.sharding import ShardMap, logical_shard
from sharehub.progress import Progress
from sharehub.seed import demand, seeded_uuid
from sharehub.seed.catalog import DECLINE_REASONS, DEMAND, SEASONS
from storage import listings as listing_store

_T = TypeVar("_T")

HISTORY_DAYS = 365
FUTURE_DAYS = 60
LEAD_MEAN = {"day": timedelta(days=5), "hour": timedelta(hours=20)}


class _Weighted(Generic[_T]):
    """A fixed distribution: (value, weight) pairs."""

    def __init__(self, *pairs: tuple[_T, int]) -> None:
        self.values = [value for value, _ in pairs]
        self.cum_weights = list(itertools.accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> _T:
        return rng.choices(self.values, cum_weights=self.cum_weights)[0]


# Lengths in units: mostly short rentals, a few weeks-long ones.
LENGTHS = {
    "day": _Weighted((1, 30), (2, 24), (3, 16), (4, 8), (5, 6), (7, 7), (10, 3), (14, 4), (21, 1), (30, 1)),
    "hour": _Weighted((1, 20), (2, 30), (3, 20), (4, 15), (6, 10), (8, 5)),
}
# What the owner does with a request (instant-book listings skip it), then what becomes of it.
ANSWERS = _Weighted(("accept", 78), ("decline", 9), ("withdraw", 5), ("expire", 8))
AFTER_ACCEPT = _Weighted(("proceed", 92), ("renter_cancels", 6), ("owner_cancels", 2))
LATE_RETURNS = 0.07
EXTENSIONS = 0.05
EXTENSIONS_ACCEPTED = 0.85
OWNER_COMPLETES = 0.7  # the rest complete when the inspection window runs out
SAME_CITY_RENTER = 0.85
# Renters book what they are into: most requests come from someone interested in the category
# (what makes "renters who booked this also booked that" - co-interest - a signal).
INTERESTED_RENTER = 0.75
INTERESTS = 3  # categories per renter, drawn by popularity
MULTI_UNIT_REQUESTS = 0.2  # of requests on listings with several identical items
# As the gateway allows (Settings.max_open_rentals_per_renter / _per_listing): rentals a renter
# holds that have not started, requested or accepted, in all and on one listing.
MAX_UNSTARTED_RENTALS = 10
MAX_UNSTARTED_ON_LISTING = 2
# Draws in a row that find no free units (or no renter) before the listings count as full.
MAX_MISSES = 2000
# With this many rentals or more, the first ones make sure the demo shows every open state.
SHOWCASE_FROM = 100
SHOWCASE = ("requested", "accepted", "active", "overdue", "returned")

_FLEET = ShardMap(1).fleet  # the deployment's fleet, whose shard actors fire the timers
_CHUNK = 1000
_TIMER_OF_COMMAND = {command: name for name, command in machine.TIMER_COMMANDS.items()}

RENTAL_COLUMNS = (
    "id", "listing_id", "renter_id", "owner_id", "status", "rental_unit", "quantity", "start_at", "end_at",
    "held_until", "unit_numbers", "quote", "total", "expires_at", "details", "version", "created_at", "updated_at",
)
TRANSITION_COLUMNS = ("rental_id", "seq", "command", "from_status", "to_status", "actor_id", "actor_role", "data",
                      "at")
BOOKING_COLUMNS = ("rental_id", "listing_id", "unit_no", "period")
TIMER_COLUMNS = ("fleet", "logical_shard", "entity_kind", "entity_id", "name", "fire_at", "command_id", "payload")

_LISTINGS = """
    SELECT l.id, l.owner_id, l.city, l.category_id, l.rental_unit, l.price_per_unit, l.deposit, l.discounts,
           l.price_overrides, l.quantity, l.min_units, l.max_units, l.min_notice_hours, l.buffer_hours,
           l.instant_book, l.cancellation_policy, l.blocked_periods, l.published_at
    FROM listings l JOIN users u ON u.id = l.owner_id
    WHERE u.email LIKE $1 AND l.status = 'published' AND l.published_at IS NOT NULL
    ORDER BY l.id"""

# One step of a rental's story: when, which command, fired by whom, with what.
_Scripted = tuple[datetime, str, machine.Role, dict[str, Any]]


@dataclass(frozen=True)
class _Listing:
    id: uuid.UUID
    owner_id: uuid.UUID
    city: str
    category_id: str
    rental_unit: str
    price_per_unit: int
    quantity: int
    min_units: int
    max_units: int | None
    min_notice: timedelta
    buffer: timedelta
    instant_book: bool
    cancellation_policy: str
    terms: PricingTerms
    quoted_terms: dict[str, Any]  # the terms as `request_booking` copies them into every quote
    blocked: tuple[tuple[datetime, datetime], ...]
    published_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> _Listing:
        blocked = tuple((day_start(date.fromisoformat(p["start"])),
                         day_start(date.fromisoformat(p["end"]) + timedelta(days=1))) for p in row["blocked_periods"])
        terms = PricingTerms(row["price_per_unit"], row["deposit"], tuple(row["discounts"]),
                             tuple(row["price_overrides"]))
        return cls(
            id=row["id"], owner_id=row["owner_id"], city=row["city"], category_id=row["category_id"],
            rental_unit=row["rental_unit"], price_per_unit=row["price_per_unit"], quantity=row["quantity"],
            min_units=row["min_units"], max_units=row["max_units"],
            min_notice=timedelta(hours=row["min_notice_hours"]), buffer=timedelta(hours=row["buffer_hours"]),
            instant_book=row["instant_book"], cancellation_policy=row["cancellation_policy"], terms=terms,
            quoted_terms={"price_per_unit": terms.price_per_unit, "deposit": terms.deposit,
                          "discounts": list(terms.discounts), "price_overrides": list(terms.price_overrides)},
            blocked=blocked, published_at=row["published_at"],
        )

    def length(self, units: int) -> int:
        return max(self.min_units, min(units, self.max_units or units))


@dataclass(frozen=True)
class _Plan:
    """How one rental's story goes, if `now` lets it get that far."""

    answer: str  # instant | accept | decline | withdraw | expire
    answer_share: float  # when the answer (or a withdrawal) comes, as a share of the request's window
    after_accept: str  # proceed | renter_cancels | owner_cancels
    cancel_share: float  # when a cancellation comes, as a share of the time from acceptance to start
    late: timedelta | None  # returned this long after the end; None: on time (a bit early)
    extension: int  # units the renter asks to add while renting (0: none)
    extension_accepted: bool
    owner_completes_after: timedelta | None  # None: the system completes after the inspection window
    decline_reason: str | None


@dataclass(frozen=True)
class _Seeded:
    status: str
    row: tuple[Any, ...]
    transitions: list[tuple[Any, ...]]
    bookings: list[tuple[Any, ...]]
    timers: list[tuple[Any, ...]]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class _Histories:
    """Draws rentals one by one; keeps each listing's calendar so no unit is booked twice."""

    def __init__(self, rng: random.Random, now: datetime, *, listings: list[_Listing], users: list[asyncpg.Record],
                 policies: dict[str, Any], holds: list[asyncpg.Record]) -> None:
        self.rng, self.now = rng, now
        self.first_day = local_day(now) - timedelta(days=HISTORY_DAYS)
        self.days = HISTORY_DAYS + FUTURE_DAYS + 1
        self.policies = policies
        self.unstarted: Counter[uuid.UUID] = Counter()
        self.unstarted_here: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
        by_listing: dict[uuid.UUID, list[tuple[int, Hold]]] = defaultdict(list)
        for h in holds:
            by_listing[h["listing_id"]].append((h["unit_no"], Hold(h["start"], h["until"], str(h["rental_id"]))))
        self.calendars = {listing_id: Calendar.of(rows) for listing_id, rows in by_listing.items()}
        self._day_cums: dict[tuple[str, str], list[float]] = {}
        self._users(users)
        self._weigh(listings)

    # ------------------------------------------------------------------ who and where

    def _users(self, users: list[asyncpg.Record]) -> None:
        # A few heavy renters, many occasional ones; each after a few kinds of things.
        activity = [min(self.rng.paretovariate(2.0), 12.0) for _ in users]
        categories = list(DEMAND)
        popularity = [DEMAND[c][0] for c in categories]
        pools: dict[tuple[str | None, str | None], list[tuple[uuid.UUID, float]]] = defaultdict(list)
        for user, weight in zip(users, activity, strict=True):
            interests = {self.rng.choices(categories, weights=popularity)[0] for _ in range(INTERESTS)}
            for city in (None, user["city"]):
                pools[(city, None)].append((user["id"], weight))
                for category in interests:
                    pools[(city, category)].append((user["id"], weight))
        self.pools = {key: ([u for u, _ in people], list(itertools.accumulate(w for _, w in people)))
                      for key, people in pools.items()}

    def _renter(self, listing: _Listing) -> uuid.UUID | None:
        for _ in range(5):
            city = listing.city if self.rng.random() < SAME_CITY_RENTER else None
            category = listing.category_id if self.rng.random() < INTERESTED_RENTER else None
            ids, cum = (self.pools.get((city, category)) or self.pools.get((city, None))
                        or self.pools[(None, None)])
            renter: uuid.UUID = self.rng.choices(ids, cum_weights=cum)[0]
            if renter != listing.owner_id:
                return renter
        return None

    def _day_cum(self, unit: str, season: str) -> list[float]:
        """Cumulative demand by day (index 0: a year ago) for a season and a rental unit."""
        key = (unit, season)
        if key not in self._day_cums:
            weights = []
            for index in range(self.days):
                day = self.first_day + timedelta(days=index)
                weight = SEASONS[season][day.month - 1] * demand.WEEKDAY[unit][day.weekday()]
                ahead = (day_start(day) - self.now) / LEAD_MEAN[unit]
                weights.append(weight * math.exp(-ahead) if ahead > 0 else weight)
            self._day_cums[key] = [0.0, *itertools.accumulate(weights)]
        return self._day_cums[key]

    def _weigh(self, listings: list[_Listing]) -> None:
        """Each listing's share of the requests: the demand model of the module docstring."""
        prices: dict[tuple[str, str], list[int]] = defaultdict(list)
        for listing in listings:
            prices[(listing.category_id, listing.rental_unit)].append(listing.price_per_unit)
        medians = {key: statistics.median(values) for key, values in prices.items()}
        self.candidates: list[tuple[_Listing, int]] = []
        weights: list[float] = []
        for listing in listings:
            first = (local_day(listing.published_at) - self.first_day).days + 1
            if first >= self.days:
                continue
            cum = self._day_cum(listing.rental_unit, DEMAND.get(listing.category_id, (1.0, "flat"))[1])
            first = max(first, 0)
            relative = listing.price_per_unit / medians[(listing.category_id, listing.rental_unit)]
            self.candidates.append((listing, first))
            weights.append(demand.listing_weight(listing.category_id, listing.city, relative) * (cum[-1] - cum[first]))
        self.cum_weights = list(itertools.accumulate(weights))

    def _listing(self) -> tuple[_Listing, int]:
        return self.rng.choices(self.candidates, cum_weights=self.cum_weights)[0]

    def _first_day(self, listing: _Listing, first: int) -> date:
        cum = self._day_cum(listing.rental_unit, DEMAND.get(listing.category_id, (1.0, "flat"))[1])
        point = cum[first] + self.rng.random() * (cum[-1] - cum[first])
        index = min(max(bisect.bisect_right(cum, point) - 1, first), self.days - 1)
        return self.first_day + timedelta(days=index)

    # ------------------------------------------------------------------ the draws

    def rentals(self, count: int) -> Iterator[_Seeded]:
        if not self.candidates or count <= 0:
            return
        made = 0
        if count >= SHOWCASE_FROM:
            for state in SHOWCASE:
                seeded = next(filter(None, (self._showcase(state) for _ in range(200))), None)
                if seeded is not None:
                    made += 1
                    yield seeded
        misses = 0
        while made < count and misses < MAX_MISSES:
            seeded = self._natural()
            misses = 0 if seeded is not None else misses + 1
            if seeded is not None:
                made += 1
                yield seeded

    def _natural(self) -> _Seeded | None:
        rng = self.rng
        listing, first = self._listing()
        day = self._first_day(listing, first)
        length = listing.length(LENGTHS[listing.rental_unit].pick(rng))
        if listing.rental_unit == "day":
            period = RentalPeriod.for_days(day, day + timedelta(days=length - 1))
        else:
            start = day_start(day) + timedelta(hours=rng.randint(9, max(9, 21 - length)))
            period = RentalPeriod.for_hours(start, start + timedelta(hours=length))
        quantity = 1
        if listing.quantity > 1 and rng.random() < MULTI_UNIT_REQUESTS:
            quantity = rng.randint(2, listing.quantity)
        # Lead times are memoryless: for a future start, the request came some time before now.
        latest = min(period.start - listing.min_notice, self.now)
        requested = latest - LEAD_MEAN[listing.rental_unit] * rng.expovariate(1.0)
        if requested <= listing.published_at:
            if latest - listing.published_at < timedelta(minutes=10):
                return None
            requested = listing.published_at + (latest - listing.published_at) * rng.uniform(0.05, 1.0)
        return self._book(listing, period, quantity, _utc(requested))

    def _showcase(self, state: str) -> _Seeded | None:
        """A rental that is in `state` now: one in the past year would rarely be (say) overdue."""
        rng = self.rng
        listing, _ = self._listing()
        length = listing.length(3)
        if listing.rental_unit != "day" or length < 3 or (state == "requested" and listing.instant_book):
            return None
        today = local_day(self.now)
        first = {
            "requested": today + timedelta(days=rng.randint(3, 20)),
            "accepted": today + timedelta(days=rng.randint(3, 20)),
            "active": today - timedelta(days=1),
            "overdue": today - timedelta(days=length + 1),  # ended yesterday, not back yet
            "returned": today - timedelta(days=length),  # back yesterday, not inspected yet
        }[state]
        period = RentalPeriod.for_days(first, first + timedelta(days=length - 1))
        if state == "requested":
            requested = self.now - timedelta(hours=rng.uniform(0.2, 6))
        elif state == "accepted":
            requested = self.now - timedelta(days=rng.uniform(1, 3))
        else:
            requested = period.start - timedelta(days=rng.uniform(1, 4))
        if requested <= listing.published_at or requested > period.start - listing.min_notice:
            return None
        plan = dataclasses.replace(
            self._plan(listing, period),
            answer="expire" if state == "requested" else "instant" if listing.instant_book else "accept",
            answer_share=0.02, after_accept="proceed", extension=0,
            late=timedelta(days=6) if state == "overdue" else None,
            owner_completes_after=None,
        )
        return self._book(listing, period, 1, _utc(requested), plan)

    def _plan(self, listing: _Listing, period: RentalPeriod) -> _Plan:
        rng = self.rng
        answer = ANSWERS.pick(rng)
        late_hours = rng.uniform(1, 30) if period.unit == "day" else rng.uniform(1 / 6, 3)
        return _Plan(
            answer="instant" if listing.instant_book else answer,
            # Owners mostly answer within a few hours of the 24 they have.
            answer_share=min(0.95, rng.expovariate(8.0)),
            after_accept=AFTER_ACCEPT.pick(rng),
            cancel_share=rng.uniform(0.05, 0.95),
            late=timedelta(hours=late_hours) if rng.random() < LATE_RETURNS else None,
            extension=rng.randint(1, min(3, period.units - 1)) if period.units > 1 and rng.random() < EXTENSIONS
            else 0,
            extension_accepted=rng.random() < EXTENSIONS_ACCEPTED,
            owner_completes_after=timedelta(hours=rng.uniform(0.2, 40)) if rng.random() < OWNER_COMPLETES else None,
            decline_reason=rng.choice(DECLINE_REASONS) if rng.random() < 0.6 else None,
        )

    # ------------------------------------------------------------------ one rental

    def _book(self, listing: _Listing, period: RentalPeriod, quantity: int, requested: datetime,
              plan: _Plan | None = None) -> _Seeded | None:
        """Hold the units like `request_booking` (the lowest free ones) and play the story (`plan`,
        else one drawn once the units are found free)."""
        until = period.end + listing.buffer
        if any(overlaps(period.start, period.end, start, end) for start, end in listing.blocked):
            return None
        calendar = self.calendars.get(listing.id, Calendar())
        free = calendar.free_units(listing.quantity, period.start, until)
        if len(free) < quantity:
            return None
        renter = self._renter(listing)
        if renter is None:
            return None
        rental_id = seeded_uuid(self.rng)
        seeded = self._play(listing, rental_id, renter, period=period, units=tuple(free[:quantity]),
                            requested=requested, plan=plan or self._plan(listing, period))
        if seeded.status in ("requested", "accepted") and period.start > self.now:
            here = (renter, listing.id)
            if self.unstarted[renter] >= MAX_UNSTARTED_RENTALS or self.unstarted_here[here] >= MAX_UNSTARTED_ON_LISTING:
                return None
            self.unstarted[renter] += 1
            self.unstarted_here[here] += 1
        # The whole period stays taken for later draws, even when this rental released it.
        self.calendars[listing.id] = calendar.with_hold(free[:quantity], Hold(period.start, until, str(rental_id)))
        return seeded

    def _price(self, listing: _Listing, period: RentalPeriod, quantity: int) -> dict[str, Any]:
        priced = quote(listing.terms, period, quantity)
        priced["terms"] = listing.quoted_terms
        priced["cancellation_policy"] = listing.cancellation_policy
        priced["cancellation_tiers"] = self.policies[listing.cancellation_policy]
        return priced

    def _play(self, listing: _Listing, rental_id: uuid.UUID, renter: uuid.UUID, *, period: RentalPeriod,
              units: tuple[int, ...], requested: datetime, plan: _Plan) -> _Seeded:
        """The rental as `request_booking` creates it, then every step of its story up to `now`."""
        booked, asked_end = period, None
        if plan.extension:
            added = UNIT_LENGTH[period.unit] * plan.extension
            if plan.extension_accepted:  # the drawn period is where it ends up
                booked, asked_end = RentalPeriod(period.unit, period.start, period.end - added), period.end
            else:
                asked_end = period.end + added
        quantity = len(units)
        status = "accepted" if plan.answer == "instant" else "requested"
        expires_at = machine.request_expiry(booked.start, booked.end, requested) if status == "requested" else None
        details: dict[str, Any] = {"late_fee_per_unit": listing.price_per_unit * quantity,
                                   "requested_at": requested.isoformat()}
        if status == "accepted":
            details["accepted_at"] = requested.isoformat()
        rental = machine.Rental(
            id=str(rental_id), listing_id=str(listing.id), renter_id=str(renter), owner_id=str(listing.owner_id),
            status=status, rental_unit=booked.unit, quantity=quantity, start=booked.start, end=booked.end,
            held_until=booked.end + listing.buffer, unit_numbers=units, quote=self._price(listing, booked, quantity),
            expires_at=expires_at, details=details, version=1, seq=1,
        )
        actors = {"renter": renter, "owner": listing.owner_id}
        request = {"instant_book": listing.instant_book}
        transitions: list[tuple[Any, ...]] = [(rental_id, 1, "request", None, status, renter, "renter", request,
                                               requested)]
        timers = {"expire": expires_at} if expires_at else {}
        released, updated = False, requested
        script = self._script(booked, requested, expires_at=expires_at, plan=plan, asked_end=asked_end)
        for at, command, role, scripted in script:
            if at > self.now:
                break
            payload = {"code": rental.details["handover_code"]} if command == "confirm_handover" else scripted
            step = machine.apply(rental, command, role, payload, at, buffer=listing.buffer,
                                 requote=lambda p: self._price(listing, p, quantity))
            new = step.rental
            if command == "handover":  # the machine's code is random; the seed's must not be
                code = f"{self.rng.randrange(1_000_000):06d}"
                new = dataclasses.replace(new, details={**new.details, "handover_code": code})
            transitions.append((rental_id, new.seq, command, rental.status, new.status, actors.get(role), role,
                                step.data, at))
            for name in step.transition.cancels:
                timers.pop(name, None)
            if role == "system":  # the timer that fired is spent
                timers.pop(_TIMER_OF_COMMAND[command], None)
            timers.update(step.timers)
            released = released or (step.hold is not None and step.hold.kind == "release")
            rental, updated = new, at
        return self._rows(listing, rental, rental_id, renter, transitions=transitions, timers=timers,
                          released=released, updated=updated)

    def _script(self, period: RentalPeriod, requested: datetime, *, expires_at: datetime | None, plan: _Plan,
                asked_end: datetime | None) -> list[_Scripted]:
        """The steps of the whole story with their times (all drawn, however far `now` lets it go)."""
        rng = self.rng
        day = period.unit == "day"
        # Day rentals change hands in the morning of the first day and come back the evening of
        # the last (before the end, so the rest of the hold is given back); hourly ones on time.
        handover_offset = timedelta(hours=rng.uniform(9, 12)) if day else -timedelta(minutes=rng.uniform(0, 15))
        confirm_after = timedelta(minutes=rng.uniform(2, 10))
        early = timedelta(hours=rng.uniform(2, 9)) if day else timedelta(minutes=rng.uniform(0, 20))
        extension_share = rng.uniform(0.2, 0.7)

        steps: list[_Scripted] = []
        accepted = requested
        if plan.answer != "instant":
            assert expires_at is not None
            at = requested + (expires_at - requested) * plan.answer_share
            if plan.answer == "expire":
                return [(expires_at, "expire", "system", {})]
            if plan.answer == "decline":
                return [(at, "decline", "owner", {"reason": plan.decline_reason} if plan.decline_reason else {})]
            if plan.answer == "withdraw":
                return [(at, "cancel", "renter", {})]
            steps.append((at, "accept", "owner", {}))
            accepted = at
        if plan.after_accept != "proceed":
            at = accepted + (period.start - accepted) * plan.cancel_share
            return [*steps, (at, "cancel", "renter" if plan.after_accept == "renter_cancels" else "owner", {})]
        handover = max(_utc(period.start + handover_offset), accepted + timedelta(minutes=5))
        confirmed = handover + confirm_after
        steps += [(handover, "handover", "owner", {}), (confirmed, "confirm_handover", "renter", {})]
        end, last = period.end, confirmed
        if asked_end is not None and period.end - confirmed > timedelta(hours=1):
            asked = confirmed + (period.end - confirmed) * extension_share
            answered = asked + (period.end - asked) * 0.3
            answer = "accept_extension" if plan.extension_accepted else "decline_extension"
            steps += [(asked, "request_extension", "renter", {"end": asked_end}), (answered, answer, "owner", {})]
            end, last = (asked_end if plan.extension_accepted else end), answered
        returned = max(_utc(end + plan.late if plan.late else end - early), last + timedelta(minutes=10))
        overdue_at = max(_utc(end + machine.OVERDUE_GRACE[period.unit]), last)
        if returned > overdue_at:
            steps.append((overdue_at, "mark_overdue", "system", {}))
        steps.append((returned, "return", "owner", {}))
        if plan.owner_completes_after is None:
            steps.append((returned + machine.INSPECTION_WINDOW, "complete", "system", {}))
        else:
            steps.append((returned + plan.owner_completes_after, "complete", "owner", {}))
        return steps

    def _rows(self, listing: _Listing, rental: machine.Rental, rental_id: uuid.UUID, renter: uuid.UUID, *,
              transitions: list[tuple[Any, ...]], timers: dict[str, datetime], released: bool,
              updated: datetime) -> _Seeded:
        row = (rental_id, listing.id, renter, listing.owner_id, rental.status, rental.rental_unit, rental.quantity,
               rental.start, rental.end, rental.held_until, list(rental.unit_numbers), rental.quote,
               rental.quote["total"], rental.expires_at, rental.details, rental.version, transitions[0][-1], updated)
        bookings = [] if released else [
            (rental_id, listing.id, unit, Range(rental.start, rental.held_until)) for unit in rental.unit_numbers
        ]
        entity_id = str(listing.id)
        shard = logical_shard(LISTING_KIND, entity_id)
        timer_rows = [(_FLEET, shard, LISTING_KIND, entity_id, timer_name(name, rental.id), fire_at,
                       seeded_uuid(self.rng), {"rental_id": rental.id}) for name, fire_at in sorted(timers.items())]
        return _Seeded(rental.status, row, transitions, bookings, timer_rows)


async def seed_rentals(conn: asyncpg.Connection, *, users_like: str, count: int, seed: int, now: datetime) -> int:
    """Add up to `count` rentals on the published listings of the users whose email is LIKE
    `users_like`, rented by the same users; returns how many (fewer when the listings are full)."""
    rng = random.Random(f"rentals:{seed}")  # noqa: S311 - reproducible demo data, not secrets
    listings = [_Listing.of(row) for row in await conn.fetch(_LISTINGS, users_like)]
    users = await conn.fetch("SELECT id, city FROM users WHERE email LIKE $1 ORDER BY id", users_like)
    policies = {p["code"]: p["tiers"] for p in await listing_store.cancellation_policies(conn)}
    # Units already booked on these listings (by people using the demo) stay theirs.
    holds = await conn.fetch(
        """SELECT listing_id, unit_no, lower(period) AS start, upper(period) AS until, rental_id FROM bookings
           WHERE listing_id = ANY($1::uuid[])""",
        [listing.id for listing in listings],
    )
    histories = _Histories(rng, now, listings=listings, users=list(users), policies=policies, holds=list(holds))
    made = 0
    drawn = histories.rentals(count)
    with Progress("rentals", count) as progress:
        while chunk := list(itertools.islice(drawn, _CHUNK)):
            await _copy(conn, "rentals", RENTAL_COLUMNS, [s.row for s in chunk])
            await _copy(conn, "rental_transitions", TRANSITION_COLUMNS, [t for s in chunk for t in s.transitions])
            await _copy(conn, "bookings", BOOKING_COLUMNS, [b for s in chunk for b in s.bookings])
            await _copy(conn, "entity_timers", TIMER_COLUMNS, [t for s in chunk for t in s.timers])
            made += len(chunk)
            progress.advance(len(chunk))
        progress.total = max(made, 1)  # fewer when the listings are full
    return made


async def _copy(conn: asyncpg.Connection, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]) -> None:
    if records:
        await conn.copy_records_to_table(table, columns=list(columns), records=records)

"""Training data from the rental history in Postgres.

The question the rental-probability model answers is "will this listing be booked for a period
starting on this day, at this price?", so its population is listing-days: every day a published
listing could have been booked, from its publication (at most a year back) to yesterday (later
days are still selling, their labels not final). A listing-day is positive when a request for a
rental starting that day was accepted (by the owner, or at once by instant booking) - its row
carries that rental's own period, request time and unit price.

Positives are a few per cent of listing-days at most, so negatives are sampled: each negative
listing-day is kept with one probability and weighted by its inverse, which keeps the
probabilities calibrated to the whole population. A negative borrows its length, start hour
and lead time from a random positive of the same rental unit, so those features have the
distribution they have when people book. Negative rows are priced at the listing's current
price (there is no price history yet)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import asyncpg

from actors.periods import LISTING_TIME_ZONE, day_start, local_day
from ml.features import Comparables, ListingFacts, features
from ml.rental_probability import Row
from ml.similar import ListingContent, SimilarListings, SimilarWeights

HISTORY_DAYS = 365


@dataclass(frozen=True)
class MarketListing:
    id: uuid.UUID
    owner_id: uuid.UUID
    facts: ListingFacts
    published_at: datetime
    title: str
    description: str
    parent_category_id: str | None
    lat: float
    lon: float


@dataclass(frozen=True)
class PastRental:
    listing_id: uuid.UUID
    renter_id: uuid.UUID
    start_at: datetime
    end_at: datetime
    requested_at: datetime
    booked: bool  # accepted at some point (instant booking included)
    unit_price: int  # kopecks per unit, as quoted


@dataclass(frozen=True)
class Market:
    listings: list[MarketListing]
    rentals: list[PastRental]
    now: datetime

    @property
    def comparables(self) -> Comparables:
        return Comparables.of(listing.facts for listing in self.listings)

    def contents(self) -> list[ListingContent]:
        """What similar listings compare: the listings' text, category, price and place."""
        return [ListingContent(id=str(listing.id), title=listing.title, description=listing.description,
                               category_id=listing.facts.category_id, parent_category_id=listing.parent_category_id,
                               price_per_unit=listing.facts.price_per_unit, lat=listing.lat, lon=listing.lon,
                               rental_unit=listing.facts.rental_unit)
                for listing in self.listings]

    def booked_history(self) -> list[tuple[datetime, str, str]]:
        """(requested at, renter, listing) of every accepted booking of a published listing."""
        listed = {listing.id for listing in self.listings}
        return [(r.requested_at, str(r.renter_id), str(r.listing_id)) for r in self.rentals
                if r.booked and r.listing_id in listed]

    def similar_listings(self, weights: SimilarWeights) -> SimilarListings:
        """The catalogue indexed for similar listings, co-interest from every booking."""
        return SimilarListings(self.contents(), [(renter, listing) for _, renter, listing in self.booked_history()],
                               weights)


@dataclass
class LabelledRows:
    rows: list[Row] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    days: list[date] = field(default_factory=list)  # the listing-day, for the time split
    listing_ids: list[uuid.UUID] = field(default_factory=list)
    prices: list[int] = field(default_factory=list)  # the row's unit price (booked or listed)

    def add(self, row: Row, *, label: int, weight: float, day: date, listing_id: uuid.UUID, price: int) -> None:
        self.rows.append(row)
        self.labels.append(label)
        self.weights.append(weight)
        self.days.append(day)
        self.listing_ids.append(listing_id)
        self.prices.append(price)

    def subset(self, keep: Sequence[bool]) -> LabelledRows:
        out = LabelledRows()
        for i, kept in enumerate(keep):
            if kept:
                out.add(self.rows[i], label=self.labels[i], weight=self.weights[i], day=self.days[i],
                        listing_id=self.listing_ids[i], price=self.prices[i])
        return out

    def split_by_time(self, holdout_share: float) -> tuple[LabelledRows, LabelledRows]:
        """Train on the earlier days, hold out the latest `holdout_share` of the period covered:
        a model is always used on days after the ones it learned from."""
        first, last = min(self.days), max(self.days)
        cutoff = last - timedelta(days=round((last - first).days * holdout_share))
        return self.subset([d < cutoff for d in self.days]), self.subset([d >= cutoff for d in self.days])


_LISTINGS = """
    SELECT l.id, l.owner_id, l.category_id, c.parent_id, l.city, l.rental_unit, l.price_per_unit, l.deposit,
           cardinality(l.photos) AS photos, l.instant_book, l.quantity, l.published_at, l.title, l.description,
           l.lat, l.lon
    FROM listings l JOIN categories c ON c.id = l.category_id
    WHERE l.status = 'published' AND l.published_at IS NOT NULL
    ORDER BY l.id"""

_RENTALS = """
    SELECT r.listing_id, r.renter_id, r.start_at, r.end_at, r.created_at,
           EXISTS (SELECT 1 FROM rental_transitions t WHERE t.rental_id = r.id AND t.to_status = 'accepted') AS booked,
           (r.quote->>'rent')::bigint / greatest(1, (r.quote->>'units')::int * r.quantity) AS unit_price
    FROM rentals r JOIN listings l ON l.id = r.listing_id
    WHERE l.status = 'published' AND r.created_at >= $1
    ORDER BY r.created_at, r.id"""


def _listing(row: asyncpg.Record) -> MarketListing:
    facts = ListingFacts(category_id=row["category_id"], city=row["city"], rental_unit=row["rental_unit"],
                         price_per_unit=row["price_per_unit"], deposit=row["deposit"], photos=row["photos"],
                         instant_book=row["instant_book"], quantity=row["quantity"])
    return MarketListing(id=row["id"], owner_id=row["owner_id"], facts=facts, published_at=row["published_at"],
                         title=row["title"], description=row["description"], parent_category_id=row["parent_id"],
                         lat=row["lat"], lon=row["lon"])


async def load_market(conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime) -> Market:
    """Published listings and the rentals asked for them over the last HISTORY_DAYS."""
    listings = [_listing(row) for row in await conn.fetch(_LISTINGS)]
    rentals = [PastRental(listing_id=r["listing_id"], renter_id=r["renter_id"], start_at=r["start_at"],
                          end_at=r["end_at"], requested_at=r["created_at"], booked=r["booked"],
                          unit_price=int(r["unit_price"]))
               for r in await conn.fetch(_RENTALS, now - timedelta(days=HISTORY_DAYS + 60))]
    return Market(listings=listings, rentals=rentals, now=now)


def booking_rows(market: Market, *, negatives_per_positive: float = 8.0, seed: int = 1) -> LabelledRows:
    """Labelled listing-day rows (see the module docstring)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    comparables = market.comparables
    today = local_day(market.now)
    first_day = today - timedelta(days=HISTORY_DAYS)
    by_id = {listing.id: listing for listing in market.listings}
    positives: dict[tuple[uuid.UUID, date], PastRental] = {}
    for rental in market.rentals:
        day = rental.start_at.astimezone(LISTING_TIME_ZONE).date()
        if rental.booked and rental.listing_id in by_id and first_day <= day < today:
            positives.setdefault((rental.listing_id, day), rental)
    templates: dict[str, list[PastRental]] = defaultdict(list)
    for (listing_id, _), rental in positives.items():
        templates[by_id[listing_id].facts.rental_unit].append(rental)

    open_days = {listing.id: _open_days(listing, first_day, today) for listing in market.listings}
    negative_days = sum(len(days) for days in open_days.values()) - len(positives)
    keep = min(1.0, negatives_per_positive * max(1, len(positives)) / max(1, negative_days))
    out = LabelledRows()
    for listing in market.listings:
        facts = listing.facts
        for day in open_days[listing.id]:
            booked = positives.get((listing.id, day))
            if booked is not None:
                row = features(facts, comparables, booked.start_at, booked.end_at, asked_at=booked.requested_at,
                               price=booked.unit_price)
                out.add(row, label=1, weight=1.0, day=day, listing_id=listing.id, price=booked.unit_price)
            elif templates[facts.rental_unit] and rng.random() < keep:
                template = rng.choice(templates[facts.rental_unit])
                start = day_start(day) + (template.start_at - day_start(local_day(template.start_at)))
                end = start + (template.end_at - template.start_at)
                asked = max(listing.published_at, start - (template.start_at - template.requested_at))
                row = features(facts, comparables, start, end, asked_at=asked)
                out.add(row, label=0, weight=1.0 / keep, day=day, listing_id=listing.id, price=facts.price_per_unit)
    return out


def _open_days(listing: MarketListing, first_day: date, today: date) -> list[date]:
    start = max(first_day, local_day(listing.published_at) + timedelta(days=1))
    return [start + timedelta(days=i) for i in range((today - start).days)]

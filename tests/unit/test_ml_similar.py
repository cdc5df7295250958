"""Similar listings on a simulated market: renters book within their interest, so the listing a
renter booked last should be among the ten most similar to one they booked before - more often
than the ten most popular listings would have it."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ml.similar import ListingContent, SimilarListings
from sharehub.seed.catalog import CITIES, ITEMS

PARENTS = {"power-tools": "tools", "hand-tools": "tools", "garden-tools": "tools", "construction": "tools"}


def _listings(rng: random.Random) -> list[ListingContent]:
    listings = []
    for item in ITEMS:
        for name in item.names:
            for copy in range(5):
                _, lat, lon, _ = rng.choice(CITIES[:5])
                price = rng.randint(*item.price_rub) * 100
                listings.append(ListingContent(
                    id=f"{name}#{copy}", title=name, description=f"{name}. {rng.choice(item.features)}.",
                    category_id=item.category_id, parent_category_id=PARENTS.get(item.category_id),
                    price_per_unit=price, lat=lat + rng.uniform(-0.1, 0.1), lon=lon + rng.uniform(-0.1, 0.1)))
    return listings


def _bookings(rng: random.Random, listings: list[ListingContent], renters: int
              ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(training bookings, [(renter, earlier listing, held-out later listing)]). Each renter is
    after one kind of thing (an item name) and books copies of it, sometimes something else in the
    category; a few listings are popular with everyone."""
    by_name: dict[str, list[ListingContent]] = {}
    by_category: dict[str, list[ListingContent]] = {}
    for listing in listings:
        by_name.setdefault(listing.title, []).append(listing)
        by_category.setdefault(listing.category_id, []).append(listing)
    popular = rng.sample(listings, 10)
    training, held_out = [], []
    for r in range(renters):
        renter = f"renter{r}"
        wanted = rng.choice(listings)
        booked = []
        for _ in range(3):
            roll = rng.random()
            pool = by_name[wanted.title] if roll < 0.6 else by_category[wanted.category_id] if roll < 0.85 else popular
            booked.append(rng.choice(pool).id)
        for listing_id in booked[:-1]:
            training.append((renter, listing_id))
        if booked[-1] != booked[0]:
            held_out.append((renter, booked[0], booked[-1]))
    return training, held_out


Market = tuple[list[ListingContent], list[tuple[str, str]], list[tuple[str, str, str]]]


@pytest.fixture(scope="module")
def market() -> Market:
    rng = random.Random(5)
    listings = _listings(rng)
    training, held_out = _bookings(rng, listings, 1500)
    return listings, training, held_out


def test_similar_listings_beat_popularity_on_recall_at_10(market: Market) -> None:
    listings, training, held_out = market
    model = SimilarListings(listings, training)
    popularity = [listing for listing, _ in Counter(lid for _, lid in training).most_common(11)]
    hits = popular_hits = 0
    for _, query, later in held_out:
        if later in {lid for lid, _ in model.similar(query, 10)}:
            hits += 1
        if later in [lid for lid in popularity if lid != query][:10]:
            popular_hits += 1
    recall, baseline = hits / len(held_out), popular_hits / len(held_out)
    print(f"recall@10 {recall:.3f}, popularity {baseline:.3f}")
    assert recall > 2 * baseline and recall > 0.3, (recall, baseline)


def test_a_listing_nobody_booked_gets_neighbours_from_its_content(market: Market) -> None:
    listings, training, _ = market
    model = SimilarListings(listings, training)
    booked = {lid for _, lid in training}
    cold = next(listing for listing in listings if listing.id not in booked)
    neighbours = model.similar(cold.id, 4)
    assert len(neighbours) == 4 and cold.id not in {lid for lid, _ in neighbours}
    same_kind = {listing.id for listing in listings if listing.title == cold.title} - {cold.id}
    assert {lid for lid, _ in neighbours} == same_kind  # its four copies, by text and category


def test_only_available_listings_are_offered(market: Market) -> None:
    listings, _, _ = market
    model = SimilarListings(listings)  # no history at all
    query = listings[0]
    copies = {listing.id for listing in listings if listing.title == query.title} - {query.id}
    unavailable = set(list(copies)[:2])
    available = {listing.id for listing in listings} - unavailable
    offered = {lid for lid, _ in model.similar(query.id, 10, available=available)}
    assert not offered & unavailable and copies - unavailable <= offered


def test_a_listing_the_index_has_not_seen_gets_the_neighbours_of_its_content(market: Market) -> None:
    listings, _, _ = market
    newcomer, catalogue = listings[0], listings[1:]
    model = SimilarListings(catalogue)  # built before the newcomer was published
    assert newcomer.id not in model.position
    found = model.similar_to(newcomer, 4)
    copies = {listing.id for listing in catalogue if listing.title == newcomer.title}
    assert {listing_id for listing_id, _ in found} == copies  # its four copies, as if it were indexed
    assert model.similar_to(catalogue[0], 3)[0][0] != catalogue[0].id  # never itself


def test_a_drafts_text_finds_its_kind_within_the_category_and_unit(market: Market) -> None:
    listings, _, _ = market
    model = SimilarListings(listings)
    query = listings[0]
    found = model.like_text(query.title, query.category_id, "day", 5)
    assert found and found[0][0].title == query.title
    assert all(listing.category_id == query.category_id for listing, _ in found)
    assert model.like_text(query.title, query.category_id, "hour", 5) == []  # no hourly listings here

"""Pure parts of ml-core's training and serving: the model store's digests, progress through a
queue, the promotion rules, the listing-day rows and their time split, co-booking pairs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors.periods import day_start, local_day
from ml.artifacts import ArtifactError, ModelStore
from ml.dataset import Market, MarketListing, PastRental, booking_rows
from ml.evaluation import co_bookings, popularity_neighbours, recall_at
from ml.features import ListingFacts
from ml.reporting import ConsoleReporter, QueueReporter
from ml.training import _pricing_decision

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_the_store_keeps_artifacts_by_content_and_refuses_a_changed_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stored = store.put("pricing", b'{"model": 1}')
    assert store.put("pricing", b'{"model": 1}') == stored  # same content, same artifact
    assert ModelStore.get(stored.uri, stored.sha256) == b'{"model": 1}'
    Path(stored.uri.removeprefix("file://")).write_bytes(b'{"model": 2}')
    with pytest.raises(ArtifactError, match="digest"):
        ModelStore.get(stored.uri, stored.sha256)
    with pytest.raises(ArtifactError):
        ModelStore.get("s3://bucket/x.json", stored.sha256)


class _Queue:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def put(self, event: tuple[Any, ...]) -> None:
        self.events.append(event)


def test_progress_through_a_queue_is_coalesced_and_replays_as_bars(tmp_path: Path) -> None:
    queue = _Queue()
    reporter = QueueReporter(queue)
    reporter.note("loading")
    reporter.start("pricing", 400)
    for _ in range(400):
        reporter.advance()
    reporter.finish()
    assert len(queue.events) < 110 and sum(e[1] for e in queue.events if e[0] == "advance") == 400
    out = tmp_path / "progress.txt"
    with out.open("w") as stream:
        console = ConsoleReporter(stream)
        for event in queue.events:
            console.replay(event)
    text = out.read_text()
    assert text.startswith("loading\n") and "pricing" in text and "100% 400/400" in text


def _metrics(**overrides: Any) -> dict[str, Any]:
    return {"monotone_in_price": True, "calibration_error": 0.01, "log_loss": 0.08,
            "baseline_logistic": {"log_loss": 0.09}, **overrides}


def test_pricing_is_promoted_only_when_it_beats_the_rival_on_the_same_holdout() -> None:
    assert _pricing_decision(_metrics())[0]
    assert not _pricing_decision(_metrics(log_loss=0.095))[0]
    assert not _pricing_decision(_metrics(monotone_in_price=False))[0]
    assert not _pricing_decision(_metrics(calibration_error=0.06))[0]
    promoted, why = _pricing_decision(_metrics(current={"version": 3, "log_loss": 0.07}))
    assert not promoted and "v3" in why


def _market() -> tuple[Market, MarketListing]:
    published = NOW - timedelta(days=100)
    facts = ListingFacts(category_id="tents", city="Москва", rental_unit="day", price_per_unit=100_000)
    listing = MarketListing(id=uuid.uuid4(), owner_id=uuid.uuid4(), facts=facts, published_at=published,
                            title="Палатка", description="", parent_category_id=None, lat=55.7, lon=37.6)
    rentals = []
    for ahead in (-60, -30, -10, 5):  # the last one starts after today: not a label yet
        start = day_start(local_day(NOW) + timedelta(days=ahead))
        rentals.append(PastRental(listing_id=listing.id, renter_id=uuid.uuid4(), start_at=start,
                                  end_at=start + timedelta(days=2), requested_at=start - timedelta(days=3),
                                  booked=True, unit_price=90_000))
    declined = day_start(local_day(NOW) - timedelta(days=20))
    rentals.append(PastRental(listing_id=listing.id, renter_id=uuid.uuid4(), start_at=declined,
                              end_at=declined + timedelta(days=1), requested_at=declined - timedelta(days=1),
                              booked=False, unit_price=100_000))
    return Market(listings=[listing], rentals=rentals, now=NOW), listing


def test_listing_days_are_labelled_by_accepted_bookings_and_negatives_weighted() -> None:
    market, _ = _market()
    rows = booking_rows(market, negatives_per_positive=5)
    positives = [i for i, label in enumerate(rows.labels) if label]
    assert len(positives) == 3  # the future booking and the declined request are not positives
    assert all(rows.prices[i] == 90_000 and rows.weights[i] == 1.0 for i in positives)
    negatives = [i for i, label in enumerate(rows.labels) if not label]
    assert negatives and all(rows.prices[i] == 100_000 for i in negatives)
    # Inverse-probability weights: the negatives stand for all ~96 unbooked days.
    assert 60 < sum(rows.weights[i] for i in negatives) < 140
    assert max(rows.days) < local_day(NOW) and len(set(rows.days)) == len(rows.days)
    train, holdout = rows.split_by_time(0.2)
    assert max(train.days) < min(holdout.days) and len(train.rows) + len(holdout.rows) == len(rows.rows)


def test_co_bookings_pair_the_last_listing_before_the_cutoff_with_the_ones_after() -> None:
    at = [NOW + timedelta(hours=i) for i in range(10)]
    bookings = [(at[0], "ann", "a"), (at[1], "ann", "b"), (at[2], "bob", "a"), (at[3], "bob", "c"),
                (at[8], "ann", "c"), (at[9], "bob", "c"), (at[9], "eve", "a")]
    split = co_bookings(bookings, holdout_share=0.3)
    assert split.training == [("ann", "a"), ("ann", "b"), ("bob", "a"), ("bob", "c")]
    assert split.pairs == [("b", "c")]  # bob's later c is what he booked last; eve has no history
    assert recall_at(1, split.pairs, lambda query, k: ["c"]) == 1.0
    assert popularity_neighbours(split.training)("a", 2) == ["b", "c"]

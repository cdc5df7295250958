"""The listing entity's booking decisions, in memory: a Hypothesis stateful test throws random
requests and rental steps at a quantity-3 listing and checks after every step that no unit is
held twice at one moment and that the calendar holds exactly what the open rentals hold."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.commands import Command
from actors.entity import Decision, Rejected
from actors.listing import LISTING, Listing
from actors.periods import local_day, now_utc

OWNER = "00000000-0000-0000-0000-0000000000aa"
RENTERS = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(1, 4)]
TIERS = {"moderate": [{"hours_before": 120, "refund_percent": 100}, {"hours_before": 0, "refund_percent": 0}]}


def _listing() -> Listing:
    return Listing(id=str(uuid.uuid4()), owner_id=OWNER, status="published", title="Палатка", description="x" * 20,
                   category_id="tents", city="Москва", lat=55.7, lon=37.6, rental_unit="day", price_per_unit=50_000,
                   cancellation_policy="moderate", quantity=3, buffer_hours=12)


class ListingBookings(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.listing = _listing()
        self.today = local_day(now_utc())
        LISTING._policies = dict(TIERS)
        self.accepted_answers = 0
        self.released: set[str] = set()
        self.requests = 0

    def _decide(self, name: str, actor: str | None, payload: dict[str, Any],
                roles: frozenset[str] = frozenset()) -> Decision | None:
        command = Command(uuid.uuid4(), "listing", self.listing.id, name, payload, actor_id=actor, actor_roles=roles)
        try:
            decision = LISTING.decide(self.listing, command)
        except Rejected as rejected:
            assert rejected.status in (403, 404, 409, 422), rejected.code
            return None
        if decision.refusal is None:
            self.accepted_answers += 1
        self.listing = decision.state
        for write in self.listing.rental_writes:
            if write.rental.status in ("declined", "cancelled", "expired"):
                self.released.add(write.rental.id)
        return decision

    @rule(renter=st.sampled_from(RENTERS), first=st.integers(1, 20), length=st.integers(0, 4),
          quantity=st.integers(1, 3))
    def request(self, renter: str, first: int, length: int, quantity: int) -> None:
        start = self.today + timedelta(days=first)
        self.requests += 1  # ids in request order, so Hypothesis replays draw the same rentals
        rental_id = str(uuid.UUID(int=self.requests))
        self._decide("request_booking", renter, {"rental_id": rental_id, "start": start.isoformat(),
                                                 "end": (start + timedelta(days=length)).isoformat(),
                                                 "quantity": quantity})

    @rule(data=st.data(), command=st.sampled_from(
        ["accept", "decline", "cancel", "handover", "confirm_handover", "return", "complete", "request_extension",
         "accept_extension", "decline_extension"]),
        who=st.sampled_from(["owner", "renter", "moderator", "timer"]))
    def step(self, data: st.DataObject, command: str, who: str) -> None:
        if not self.listing.rentals:
            return
        rental = self.listing.rentals[data.draw(st.sampled_from(sorted(self.listing.rentals)))]
        payload: dict[str, Any] = {"rental_id": rental.id}
        if command == "request_extension":
            extra = data.draw(st.integers(1, 5))
            payload["end"] = (local_day(rental.end) - timedelta(days=1) + timedelta(days=extra)).isoformat()
        if command == "confirm_handover":
            payload["code"] = rental.details.get("handover_code", "000000")
        if who == "timer":
            timer = {"decline": "expire", "return": "overdue", "complete": "complete"}.get(command)
            if timer is None:
                return
            self._decide(f"timer:rental.{timer}#{rental.id}", None, payload, frozenset({"system"}))
            return
        actor = {"owner": OWNER, "renter": rental.renter_id, "moderator": str(uuid.uuid4())}[who]
        roles = frozenset({"moderator"}) if who == "moderator" else frozenset()
        self._decide(f"rental.{command}", actor, payload, roles)

    @invariant()
    def no_unit_is_held_twice_at_once(self) -> None:
        for holds in self.listing.calendar.holds.values():
            for earlier, later in itertools.pairwise(holds):
                assert earlier.until <= later.start

    @invariant()
    def the_calendar_holds_what_open_rentals_hold(self) -> None:
        held = {(unit, hold.rental_id) for unit, holds in self.listing.calendar.holds.items() for hold in holds}
        for rental in self.listing.rentals.values():
            if rental.status in ("requested", "accepted", "active", "overdue"):
                assert {(unit, rental.id) for unit in rental.unit_numbers} <= held
        assert not {rental_id for _, rental_id in held} & self.released


ListingBookings.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_listing_bookings = ListingBookings.TestCase

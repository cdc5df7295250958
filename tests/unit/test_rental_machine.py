"""The rental state machine: every allowed and every forbidden transition, and a Hypothesis
stateful test that drives it with random commands from random parties against a simple model
written from the product rules (not from the TRANSITIONS table it checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors import rental_machine as machine
from actors.periods import RentalPeriod
from actors.quotes import PricingTerms, quote
from actors.rental_machine import Rental, TransitionRefused

NOW = datetime(2027, 6, 1, 12, tzinfo=UTC)
ROLES: tuple[machine.Role, ...] = ("renter", "owner", "moderator", "system")
TIERS = [{"hours_before": 120, "refund_percent": 100}, {"hours_before": 24, "refund_percent": 50},
         {"hours_before": 0, "refund_percent": 0}]

# The product rules, written out by hand: (status, command) -> (who may, status after).
MODEL: dict[tuple[str, str], tuple[set[str], str]] = {
    ("requested", "accept"): ({"owner"}, "accepted"),
    ("requested", "decline"): ({"owner"}, "declined"),
    ("requested", "cancel"): ({"renter", "moderator"}, "cancelled"),
    ("requested", "expire"): ({"system"}, "expired"),
    ("accepted", "cancel"): ({"renter", "owner", "moderator"}, "cancelled"),
    ("accepted", "handover"): ({"owner"}, "accepted"),
    ("accepted", "confirm_handover"): ({"renter"}, "active"),
    ("accepted", "request_extension"): ({"renter"}, "accepted"),
    ("accepted", "accept_extension"): ({"owner"}, "accepted"),
    ("accepted", "decline_extension"): ({"owner"}, "accepted"),
    ("active", "mark_overdue"): ({"system"}, "overdue"),
    ("active", "return"): ({"owner"}, "returned"),
    ("active", "request_extension"): ({"renter"}, "active"),
    ("active", "accept_extension"): ({"owner"}, "active"),
    ("active", "decline_extension"): ({"owner"}, "active"),
    ("overdue", "return"): ({"owner"}, "returned"),
    ("returned", "complete"): ({"owner", "system"}, "completed"),
}
RELEASING = {"declined", "cancelled", "expired"}


def _terms() -> PricingTerms:
    return PricingTerms(70_000, 500_000, [{"min_units": 3, "percent": 10}], [])


def _requote(period: Any) -> dict[str, Any]:
    return {**quote(_terms(), period, 1), "cancellation_tiers": TIERS}


def _rental(status: str = "requested", **details: Any) -> Rental:
    start = NOW + timedelta(days=10)
    end = start + timedelta(days=2)
    priced = {**quote(_terms(), RentalPeriod("day", start, end), 1), "cancellation_tiers": TIERS}
    return Rental(id="r", listing_id="l", renter_id="u1", owner_id="u2", status=status, rental_unit="day",
                  quantity=1, start=start, end=end, held_until=end, unit_numbers=(1,), quote=priced,
                  expires_at=NOW + timedelta(hours=24),
                  details={"late_fee_per_unit": 70_000, **details}, version=1, seq=1)


def _payload(rental: Rental, command: str) -> dict[str, Any]:
    if command == "request_extension":
        return {"end": rental.end + timedelta(days=1)}
    if command == "confirm_handover":
        return {"code": rental.details.get("handover_code", "000000")}
    return {}


def _ready(status: str, command: str) -> Rental:
    """A rental in `status` that `command` can succeed on (a code issued, an extension asked)."""
    details: dict[str, Any] = {}
    if command == "confirm_handover":
        details = {"handover_code": "123456", "handover_attempts": 0}
    if command in ("accept_extension", "decline_extension"):
        details = {"extension": {"end": (NOW + timedelta(days=13)).isoformat(), "requested_at": NOW.isoformat()}}
    return _rental(status, **details)


@pytest.mark.parametrize("status", sorted(machine.STATES))
@pytest.mark.parametrize("command", sorted(machine.COMMANDS))
@pytest.mark.parametrize("role", ROLES)
def test_every_transition_and_every_forbidden_one(status: str, command: str, role: machine.Role) -> None:
    rental = _ready(status, command)
    expected = MODEL.get((status, command))
    if expected is None:
        with pytest.raises(TransitionRefused) as refused:
            machine.apply(rental, command, role, _payload(rental, command), NOW, buffer=timedelta(0),
                          requote=_requote)
        assert (refused.value.status, refused.value.code) == (409, "invalid_transition")
        return
    who, target = expected
    if role not in who:
        with pytest.raises(TransitionRefused) as refused:
            machine.apply(rental, command, role, _payload(rental, command), NOW, buffer=timedelta(0),
                          requote=_requote)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        return
    step = machine.apply(rental, command, role, _payload(rental, command), NOW, buffer=timedelta(0),
                         requote=_requote)
    assert step.refusal is None
    assert step.rental.status == target
    assert step.rental.version == rental.version + 1
    # Releasing states free the units; so does a return before the rental even began.
    early_return = command == "return" and rental.start >= NOW
    assert (step.hold is not None and step.hold.kind == "release") == (target in RELEASING or early_return)


def test_the_table_and_the_model_agree_on_every_pair() -> None:
    declared = {(source, t.command): (set(t.who), t.target or source)
                for t in machine.TRANSITIONS for source in t.sources}
    assert declared == MODEL


def test_a_renter_cancelling_late_gets_the_policy_refund_and_an_owner_is_marked() -> None:
    rental = _rental("accepted")
    late = machine.apply(rental, "cancel", "renter", {}, rental.start - timedelta(hours=30), buffer=timedelta(0))
    assert late.rental.details["cancellation"]["refund_percent"] == 50
    assert not late.rental.details["cancellation"]["owner_penalty"]
    by_owner = machine.apply(rental, "cancel", "owner", {}, NOW, buffer=timedelta(0))
    assert by_owner.rental.details["cancellation"] | {"at": ""} == {
        "by": "owner", "refund_percent": 100, "refund_amount": rental.quote["total"], "owner_penalty": True, "at": ""}


def test_a_late_return_pays_per_started_unit_after_the_grace() -> None:
    rental = _rental("overdue")
    on_time = machine.apply(rental, "return", "owner", {}, rental.end + timedelta(hours=2), buffer=timedelta(0))
    assert on_time.rental.details["late_fee"] == 0  # within the 3-hour grace of day rentals
    late = machine.apply(rental, "return", "owner", {}, rental.end + timedelta(hours=25), buffer=timedelta(0))
    assert late.rental.details["late_fee"] == 2 * 70_000  # two started days


def test_an_early_return_frees_the_rest_of_the_period() -> None:
    rental = _rental("active")
    back = rental.start + timedelta(hours=20)
    step = machine.apply(rental, "return", "owner", {}, back, buffer=timedelta(hours=2))
    assert step.hold == machine.HoldChange("shorten", back + timedelta(hours=2))
    assert step.timers == {"complete": back + machine.INSPECTION_WINDOW}


def test_five_wrong_codes_burn_the_handover_code() -> None:
    rental = _rental("accepted", handover_code="123456", handover_attempts=0)
    for attempt in range(1, machine.HANDOVER_CODE_ATTEMPTS + 1):
        step = machine.apply(rental, "confirm_handover", "renter", {"code": "654321"}, NOW, buffer=timedelta(0))
        rental = step.rental
        expected = "handover_code_burnt" if attempt == machine.HANDOVER_CODE_ATTEMPTS else "wrong_handover_code"
        assert step.refusal == expected and rental.status == "accepted"
    burnt = machine.apply(rental, "confirm_handover", "renter", {"code": "123456"}, NOW, buffer=timedelta(0))
    assert burnt.refusal == "no_handover_code"


def test_request_expiry_never_passes_the_start() -> None:
    assert machine.request_expiry(NOW + timedelta(hours=5), NOW + timedelta(days=1), NOW) == NOW + timedelta(hours=5)
    assert machine.request_expiry(NOW + timedelta(days=5), NOW + timedelta(days=6), NOW) == NOW + timedelta(hours=24)
    assert machine.request_expiry(NOW - timedelta(hours=5), NOW + timedelta(hours=1), NOW) == NOW + timedelta(hours=1)


class RentalLifecycle(RuleBasedStateMachine):
    """Random commands by random parties; the machine must agree with MODEL at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.rental = _rental()
        self.model_status = "requested"
        self.extension_pending = False
        self.code: str | None = None
        self.held = True
        self.clock = NOW

    @rule(command=st.sampled_from(sorted(machine.COMMANDS)), role=st.sampled_from(ROLES),
          right_code=st.booleans(), hours=st.integers(min_value=0, max_value=100))
    def fire(self, command: str, role: machine.Role, right_code: bool, hours: int) -> None:
        self.clock += timedelta(hours=hours)
        payload: dict[str, Any] = {}
        if command == "request_extension":
            payload = {"end": self.rental.end + timedelta(days=1)}
        if command == "confirm_handover":
            payload = {"code": (self.code or "000000") if right_code else "x"}
        expected = MODEL.get((self.model_status, command))
        try:
            step = machine.apply(self.rental, command, role, payload, self.clock, buffer=timedelta(0),
                                 requote=_requote)
        except TransitionRefused as refused:
            if expected is None:
                assert refused.status == 409
            elif role not in expected[0]:
                assert refused.status == 403
            else:  # allowed in principle, refused by a guard: an extension answer without a request
                assert command in ("accept_extension", "decline_extension") and not self.extension_pending
                assert refused.code == "no_extension_requested"
            return
        assert expected is not None and role in expected[0]
        assert step.rental.version == self.rental.version + 1
        if step.refusal is not None:
            self._refused_code(step, command, right_code)
            return
        if command == "confirm_handover":
            assert right_code and self.code is not None
        if command == "handover":
            self.code = step.private_reply["handover_code"]
        if command == "request_extension":
            self.extension_pending = True
        if command in ("accept_extension", "decline_extension"):
            self.extension_pending = False
        if step.hold is not None and step.hold.kind == "release":
            self.held = False
        self.model_status = expected[1]
        assert step.rental.seq == self.rental.seq + 1
        self.rental = step.rental

    def _refused_code(self, step: machine.Step, command: str, right_code: bool) -> None:
        """A wrong or missing handover code: stored (it counts), nothing moves."""
        assert command == "confirm_handover" and not (right_code and self.code)
        if step.refusal in {"handover_code_burnt", "no_handover_code"}:
            self.code = None
        self.rental = step.rental

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.rental.status == self.model_status
        assert ("extension" in self.rental.details) == self.extension_pending
        if self.model_status in RELEASING:
            assert not self.held
        if self.model_status in {"requested", "accepted", "active", "overdue"}:
            assert self.held
        if self.model_status in machine.TERMINAL_STATES:
            assert not self.extension_pending or self.model_status != "completed"

    @invariant()
    def the_end_only_moves_later(self) -> None:
        assert self.rental.end >= _rental().end
        assert self.rental.quote["total"] >= _rental().quote["total"]


RentalLifecycle.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
test_rental_lifecycle = RentalLifecycle.TestCase


def test_a_step_never_changes_the_rental_it_started_from() -> None:
    rental = _rental("accepted")
    before = dict(rental.details)
    step = machine.apply(rental, "handover", "owner", {}, NOW, buffer=timedelta(0))
    assert rental.details == before and "handover_code" in step.rental.details

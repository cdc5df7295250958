"""The listing entity: its state, its lifecycle and who may move it.

    draft -> pending_review -> published <-> paused -> archived
                  |  ^
                  v  |  (moderators approve or reject with a reason; the owner edits and resubmits)
               rejected

Editing what a published (or paused) listing *is* - its title, description, photos, category,
attributes or location - does not take the public version down: the edit waits in
`pending_revision` for a moderator, who applies or rejects it (otherwise an approved drill could
become anything, anywhere, without review). Prices and terms apply at once. The first approval
makes the author an `owner` (in the same transaction). Moderators never review their own listings.

A listing also owns its calendar and its open rentals: booking requests and every later step of
a rental are commands to the listing (actors/listing_rentals.py)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import immutables

from actors import listing_rentals as booking
from actors.calendar import Calendar, Hold
from actors.commands import Command
from actors.entity import Decision, Event, Rejected, VersionConflict
from actors.rental_machine import Rental
from storage import listings as listing_store
from storage import rentals as rental_store

KIND = "listing"
# What moderators review on a published listing: what it is, what it looks like and where it is.
CONTENT_FIELDS = ("title", "description", "photos", "category_id", "attributes", "city", "lat", "lon")
EDITABLE_FIELDS = (
    "title", "description", "photos", "category_id", "attributes", "city", "lat", "lon", "rental_unit",
    "price_per_unit", "discounts", "price_overrides", "deposit", "quantity", "min_units", "max_units",
    "min_notice_hours", "buffer_hours", "instant_book", "cancellation_policy",
)
_OWNER_STATES_EDITABLE = frozenset({"draft", "pending_review", "rejected", "published", "paused"})


@dataclass(frozen=True)
class Listing:
    id: str
    owner_id: str
    status: str
    title: str
    description: str
    category_id: str
    city: str
    lat: float
    lon: float
    rental_unit: str
    price_per_unit: int
    cancellation_policy: str
    photos: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    discounts: tuple[dict[str, int], ...] = ()
    price_overrides: tuple[dict[str, Any], ...] = ()
    deposit: int = 0
    quantity: int = 1
    min_units: int = 1
    max_units: int | None = None
    min_notice_hours: int = 0
    buffer_hours: int = 0
    instant_book: bool = False
    blocked_periods: tuple[dict[str, str], ...] = ()
    pending_revision: dict[str, Any] | None = None
    rejection_reason: str | None = None
    published_at: str | None = None
    # Set by the decision that publishes for the first time; `save` then grants the owner role.
    first_publication: bool = False
    # Rentals that can still change, by id, and the units they (and recently finished ones) hold.
    rentals: immutables.Map[str, Rental] = field(default_factory=immutables.Map)
    calendar: Calendar = field(default_factory=Calendar)
    # Set by a booking decision: what `save_group` must write besides the listing row.
    rental_writes: tuple[booking.RentalWrite, ...] = ()

    def public_content(self) -> dict[str, Any]:
        return {"title": self.title, "description": self.description, "photos": list(self.photos)}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _is_moderator(command: Command) -> bool:
    return bool({"moderator", "admin"} & command.actor_roles)


def _require_owner(listing: Listing, command: Command) -> None:
    if command.actor_id != listing.owner_id:
        if _is_moderator(command):
            raise Rejected(403, "forbidden", "Only the listing's owner may do this.")
        raise Rejected(404, "not_found", "No such listing.")


def _require_other_reviewer(listing: Listing, command: Command) -> None:
    """Four eyes: a moderator who also rents things out has their listings reviewed by another."""
    if command.actor_id == listing.owner_id:
        raise Rejected(403, "own_listing", "Moderators do not review their own listings.")


def _require_status(listing: Listing, allowed: set[str], action: str) -> None:
    if listing.status not in allowed:
        raise Rejected(409, "invalid_transition", f"A {listing.status} listing cannot be {action}.")


def _check_rentals_allow(listing: Listing, changes: dict[str, Any]) -> None:
    """Open rentals pin what they were booked as: their unit of time and their unit numbers."""
    if not listing.rentals:
        return
    if changes.get("rental_unit", listing.rental_unit) != listing.rental_unit:
        raise Rejected(409, "has_open_rentals", "The rental unit cannot change while rentals are open.")
    highest = max((max(r.unit_numbers) for r in listing.rentals.values()), default=0)
    if changes.get("quantity", listing.quantity) < highest:
        raise Rejected(409, "has_open_rentals", f"Item number {highest} is booked; the quantity cannot go below it.")


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    """Cross-field rules the request schema cannot express."""
    min_units, max_units = fields.get("min_units", 1), fields.get("max_units")
    if max_units is not None and max_units < min_units:
        raise Rejected(422, "validation_failed", "max_units must be at least min_units.")
    return {
        **fields,
        "photos": tuple(fields.get("photos", ())),
        "discounts": tuple(sorted(fields.get("discounts", ()), key=lambda d: d["min_units"])),
        "price_overrides": tuple(fields.get("price_overrides", ())),
    }


class ListingKind:
    name = KIND

    def __init__(self) -> None:
        # Cancellation policy tiers by code (data from a migration; read on the first load).
        self._policies: dict[str, Any] = {}

    def decide(self, state: Listing | None, command: Command) -> Decision:
        is_rental = command.name.startswith((booking.RENTAL_COMMAND_PREFIX, booking.RENTAL_TIMER_PREFIX))
        handler = getattr(self, f"_do_{command.name}", None)
        if handler is None and not is_rental:
            raise Rejected(400, "unknown_command", f"Listings do not understand {command.name!r}.")
        if command.name == "create":
            if state is not None:
                raise Rejected(409, "already_exists", "This listing already exists.")
            return self._do_create(command)
        if state is None:
            raise Rejected(404, "not_found", "No such listing.")
        if is_rental or command.name == "request_booking":
            # These set `rental_writes` and clear `first_publication` themselves (one copy of
            # the listing per booking decision, not two: hot listings decide thousands a second).
            return booking.rental_command(state, command) if is_rental else self._do_request_booking(state, command)
        if state.first_publication or state.rental_writes:  # written when that decision was saved
            state = dataclasses.replace(state, first_publication=False, rental_writes=())
        assert handler is not None
        decision: Decision = handler(state, command)
        return decision

    def _do_request_booking(self, state: Listing, command: Command) -> Decision:
        return booking.request_booking(state, command, self._policies)

    # ------------------------------------------------------------------ owner commands

    def _do_create(self, command: Command) -> Decision:
        assert command.actor_id
        fields = _validated(command.payload)
        listing = Listing(id=command.entity_id, owner_id=command.actor_id, status="draft", **fields)
        return Decision(state=listing, events=[Event("created", {"owner_id": listing.owner_id})],
                        reply={"status": "draft"})

    def _do_update(self, state: Listing, command: Command) -> Decision:
        _require_owner(state, command)
        _require_status(state, set(_OWNER_STATES_EDITABLE), "edited")
        changes = dict(command.payload)
        _check_rentals_allow(state, changes)
        if not changes:
            return Decision(state=state, changed=False, reply={"status": state.status})
        merged = {f.name: getattr(state, f.name) for f in dataclasses.fields(Listing) if f.name in EDITABLE_FIELDS}
        if state.status in ("published", "paused"):
            content = {k: changes.pop(k) for k in CONTENT_FIELDS if k in changes}
            revision = {**(state.pending_revision or {}), **content} if content else state.pending_revision
            fields = _validated({**merged, **changes})
            new = dataclasses.replace(state, **fields, pending_revision=revision,
                                      rejection_reason=None if content else state.rejection_reason)
            events = [Event("updated", {"fields": sorted(changes)})] if changes else []
            if content:
                events.append(Event("revision_submitted", {"fields": sorted(content)}))
            return Decision(state=new, events=events, reply={"status": new.status,
                                                             "pending_review": bool(content)})
        fields = _validated({**merged, **changes})
        new = dataclasses.replace(state, **fields)
        return Decision(state=new, events=[Event("updated", {"fields": sorted(changes)})],
                        reply={"status": new.status})

    def _do_submit(self, state: Listing, command: Command) -> Decision:
        _require_owner(state, command)
        _require_status(state, {"draft", "rejected"}, "submitted")
        new = dataclasses.replace(state, status="pending_review", rejection_reason=None)
        return Decision(state=new, events=[Event("submitted", {})], reply={"status": new.status})

    def _do_pause(self, state: Listing, command: Command) -> Decision:
        _require_owner(state, command)
        _require_status(state, {"published"}, "paused")
        new = dataclasses.replace(state, status="paused")
        return Decision(state=new, events=[Event("paused", {})], reply={"status": new.status})

    def _do_resume(self, state: Listing, command: Command) -> Decision:
        _require_owner(state, command)
        _require_status(state, {"paused"}, "resumed")
        new = dataclasses.replace(state, status="published")
        return Decision(state=new, events=[Event("resumed", {})], reply={"status": new.status})

    def _do_archive(self, state: Listing, command: Command) -> Decision:
        if not _is_moderator(command):
            _require_owner(state, command)
        _require_status(state, {"draft", "pending_review", "rejected", "published", "paused"}, "archived")
        if any(r.status != "returned" for r in state.rentals.values()):
            raise Rejected(409, "has_open_rentals", "Finish, decline or cancel this listing's rentals first.")
        new = dataclasses.replace(state, status="archived", pending_revision=None)
        return Decision(state=new, events=[Event("archived", {})], reply={"status": new.status})

    def _do_set_blocked_periods(self, state: Listing, command: Command) -> Decision:
        _require_owner(state, command)
        _require_status(state, set(_OWNER_STATES_EDITABLE), "changed")
        periods = tuple(sorted(command.payload["periods"], key=lambda p: p["start"]))
        for period in periods:
            if date.fromisoformat(period["end"]) < date.fromisoformat(period["start"]):
                raise Rejected(422, "validation_failed", "A blocked period ends before it starts.")
        new = dataclasses.replace(state, blocked_periods=periods)
        return Decision(state=new, events=[Event("availability_changed", {"blocked_periods": list(periods)})],
                        reply={"blocked_periods": list(periods)})

    # ------------------------------------------------------------------ moderation

    def _do_approve(self, state: Listing, command: Command) -> Decision:
        if not _is_moderator(command):
            raise Rejected(403, "forbidden", "Only moderators approve listings.")
        _require_other_reviewer(state, command)
        if state.status == "pending_review":
            first = state.published_at is None
            new = dataclasses.replace(state, status="published", rejection_reason=None,
                                      published_at=state.published_at or _now(), first_publication=first)
            return Decision(state=new, events=[Event("published", {"first": first})], reply={"status": "published"})
        if state.pending_revision is not None:
            content = dict(state.pending_revision)
            if "photos" in content:
                content["photos"] = tuple(content["photos"])
            new = dataclasses.replace(state, **content, pending_revision=None, rejection_reason=None)
            return Decision(state=new, events=[Event("revision_approved", {})], reply={"status": new.status})
        raise Rejected(409, "invalid_transition", "Nothing of this listing is waiting for review.")

    def _do_reject(self, state: Listing, command: Command) -> Decision:
        if not _is_moderator(command):
            raise Rejected(403, "forbidden", "Only moderators reject listings.")
        _require_other_reviewer(state, command)
        reason = str(command.payload["reason"])
        if state.status == "pending_review":
            new = dataclasses.replace(state, status="rejected", rejection_reason=reason)
            return Decision(state=new, events=[Event("rejected", {"reason": reason})], reply={"status": "rejected"})
        if state.pending_revision is not None:
            new = dataclasses.replace(state, pending_revision=None, rejection_reason=reason)
            return Decision(state=new, events=[Event("revision_rejected", {"reason": reason})],
                            reply={"status": new.status})
        raise Rejected(409, "invalid_transition", "Nothing of this listing is waiting for review.")

    # ------------------------------------------------------------------ storage

    async def load(self, conn: asyncpg.Connection, entity_id: str) -> tuple[Listing, int] | None:
        row = await listing_store.load_row(conn, uuid.UUID(entity_id))
        if row is None:
            return None
        version = row.pop("version")
        row["id"] = str(row["id"])
        row["owner_id"] = str(row["owner_id"])
        row["photos"] = tuple(str(p) for p in row["photos"])
        row["discounts"] = tuple(row["discounts"])
        row["price_overrides"] = tuple(row["price_overrides"])
        row["blocked_periods"] = tuple(row["blocked_periods"])
        row["published_at"] = row["published_at"].isoformat() if row["published_at"] else None
        listing_id = uuid.UUID(entity_id)
        if row["cancellation_policy"] not in self._policies:
            self._policies = {p["code"]: p["tiers"] for p in await listing_store.cancellation_policies(conn)}
        open_rentals = await rental_store.load_open(conn, listing_id)
        rentals = immutables.Map({str(r["id"]): rental_from_row(r) for r in open_rentals})
        since = datetime.now(UTC) - timedelta(days=1)
        holds = await rental_store.load_holds(conn, listing_id, since)
        calendar = Calendar.of((h["unit_no"], Hold(h["start"], h["until"], str(h["rental_id"]))) for h in holds)
        return Listing(**row, rentals=rentals, calendar=calendar), version

    async def save_group(self, conn: asyncpg.Connection, chains: dict[str, list[tuple[Listing, int]]]) -> None:
        """Store the chains of decided states of many listings at once. A chain of booking
        decisions changes no listing column, only the version - the fencing point for the
        listing's rentals too - so those listings take one statement together; the others are
        written whole. Then every rental write of every chain, a few statements in all."""
        bumps = {listing_id: (chain[0][1], chain[0][1] + len(chain)) for listing_id, chain in chains.items()
                 if all(state.rental_writes for state, _ in chain)}
        if bumps and not await listing_store.bump_versions(conn, bumps):
            raise VersionConflict
        for listing_id, chain in chains.items():
            if listing_id not in bumps:
                await self._write_listing_row(conn, chain)
        await _write_rentals(conn, [write for chain in chains.values() for state, _ in chain
                                    for write in state.rental_writes])

    @staticmethod
    async def _write_listing_row(conn: asyncpg.Connection, chain: list[tuple[Listing, int]]) -> None:
        """The listing row as the chain ends (checked against the version before it)."""
        state, expected_version = chain[-1][0], chain[0][1]
        row = {name: getattr(state, name) for name in listing_store.ENTITY_COLUMNS}
        row["id"], row["owner_id"] = uuid.UUID(state.id), uuid.UUID(state.owner_id)
        row["photos"] = [uuid.UUID(p) for p in state.photos]
        row["discounts"], row["price_overrides"] = list(state.discounts), list(state.price_overrides)
        row["blocked_periods"] = list(state.blocked_periods)
        row["published_at"] = datetime.fromisoformat(state.published_at) if state.published_at else None
        if not await listing_store.write_row(conn, row, expected_version, expected_version + len(chain)):
            raise VersionConflict
        if any(s.first_publication for s, _ in chain):
            # Same transaction as the approval: the author is an owner exactly when it is published.
            await listing_store.grant_owner_role(conn, row["owner_id"])


def rental_from_row(row: dict[str, Any]) -> Rental:
    """A rental as its row in Postgres has it (`seq`: its number of transitions, when read)."""
    return Rental(
        id=str(row["id"]), listing_id=str(row["listing_id"]), renter_id=str(row["renter_id"]),
        owner_id=str(row["owner_id"]), status=row["status"], rental_unit=row["rental_unit"],
        quantity=row["quantity"], start=row["start_at"], end=row["end_at"], held_until=row["held_until"],
        unit_numbers=tuple(row["unit_numbers"]), quote=row["quote"], expires_at=row["expires_at"],
        details=row["details"], version=row["version"], seq=row.get("seq", 0),
    )


def _rental_row(rental: Rental) -> dict[str, Any]:
    return {
        "id": uuid.UUID(rental.id), "listing_id": uuid.UUID(rental.listing_id),
        "renter_id": uuid.UUID(rental.renter_id), "owner_id": uuid.UUID(rental.owner_id), "status": rental.status,
        "rental_unit": rental.rental_unit, "quantity": rental.quantity, "start_at": rental.start,
        "end_at": rental.end, "held_until": rental.held_until, "unit_numbers": list(rental.unit_numbers),
        "quote": rental.quote, "total": rental.quote["total"], "expires_at": rental.expires_at,
        "details": rental.details, "version": rental.version,
    }


async def _write_rentals(conn: asyncpg.Connection, writes: list[booking.RentalWrite]) -> None:
    """A rental written several times in one group is stored once, as it ends; its transitions
    all; its booking rows as its last hold change left them."""
    last: dict[str, booking.RentalWrite] = {}
    stored_version: dict[str, int] = {}  # the version in Postgres before this chain (0: new)
    hold_changed: dict[str, str] = {}
    transitions = []
    for write in writes:
        rental_id = write.rental.id
        stored_version.setdefault(rental_id, 0 if write.new else write.rental.version - 1)
        last[rental_id] = write
        if write.hold is not None:
            hold_changed[rental_id] = write.hold
        if write.transition is not None:
            actor = write.transition["actor_id"]
            transitions.append({**write.transition, "rental_id": uuid.UUID(rental_id),
                                "actor_id": uuid.UUID(actor) if actor else None})
    new = [_rental_row(w.rental) for rid, w in last.items() if stored_version[rid] == 0]
    changed = [(_rental_row(w.rental), stored_version[rid]) for rid, w in last.items() if stored_version[rid] != 0]
    if new:
        await rental_store.insert_rentals(conn, new)
    if changed:
        await rental_store.update_rentals(conn, changed)
    if transitions:
        await rental_store.add_transitions(conn, transitions)
    released = [uuid.UUID(rid) for rid in hold_changed if stored_version[rid] != 0]
    held = [
        (uuid.UUID(rid), uuid.UUID(last[rid].rental.listing_id), unit, last[rid].rental.start,
         last[rid].rental.held_until)
        for rid, change in hold_changed.items() if change != "release"
        for unit in last[rid].rental.unit_numbers
    ]
    if released or held:
        await rental_store.replace_holds(conn, released, held)


LISTING = ListingKind()

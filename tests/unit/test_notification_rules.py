"""The event -> notification rules (sharehub/notifications/rules.py): who is told what, with which
data and text, and the chat badges - as a pure function, no services."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sharehub.notifications import events
from sharehub.notifications.rules import RULES, SUBJECTS, DomainEvent, Facts, concerns, plan
from sharehub.notifications.texts import NOTIFICATION_TYPES, TEMPLATES, render

OWNER, RENTER, STRANGER = "0b3f2c9e-0000-4000-8000-00000000000a", "0b3f2c9e-0000-4000-8000-00000000000b", "x"
LISTING, RENTAL, ROOM = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
TITLE = "Перфоратор Bosch GBH 2-26"
RENTAL_FACTS = Facts(listing_id=LISTING, listing_title=TITLE, owner_id=OWNER, renter_id=RENTER)


def _event(kind: str, event_type: str, data: dict[str, Any], entity_id: str | None = None) -> DomainEvent:
    entity = entity_id or {"rental": RENTAL, "listing": LISTING, "chat": ROOM}[kind]
    return DomainEvent.parse({"event_id": str(uuid.uuid4()), "type": event_type, "kind": kind, "entity_id": entity,
                              "version": 1, "occurred_at": "2027-06-01T10:15:00+00:00", "data": data})


def _told(event: DomainEvent, facts: Facts = RENTAL_FACTS) -> list[tuple[str, str]]:
    return [(item.user_id, item.type) for item in plan(event, facts).notifications]


def _state(to: str, frm: str | None, by: str, **data: Any) -> DomainEvent:
    return _event("rental", "state_changed", {"from": frm, "to": to, "by": by, "listing_id": LISTING,
                                              "renter_id": RENTER, "owner_id": OWNER, **data})


@pytest.mark.parametrize(("to", "frm", "by", "expected"), [
    ("requested", None, "renter", [(OWNER, "rental_requested")]),
    ("accepted", None, "renter", [(OWNER, "rental_booked")]),  # instant book
    ("accepted", "requested", "owner", [(RENTER, "rental_accepted")]),
    ("declined", "requested", "owner", [(RENTER, "rental_declined")]),
    ("expired", "requested", "system", [(RENTER, "rental_expired")]),
    ("cancelled", "requested", "renter", [(OWNER, "rental_cancelled")]),
    ("cancelled", "accepted", "owner", [(RENTER, "rental_cancelled")]),
    ("cancelled", "accepted", "moderator", [(RENTER, "rental_cancelled"), (OWNER, "rental_cancelled")]),
    ("active", "accepted", "renter", [(OWNER, "rental_started")]),
    ("overdue", "active", "system", [(RENTER, "rental_overdue"), (OWNER, "rental_overdue")]),
    ("returned", "overdue", "owner", [(RENTER, "rental_returned")]),
    ("completed", "returned", "system", []),
])
def test_each_rental_step_tells_the_right_party(to: str, frm: str | None, by: str,
                                                expected: list[tuple[str, str]]) -> None:
    assert _told(_state(to, frm, by)) == expected


@pytest.mark.parametrize(("event_type", "data", "expected"), [
    ("extension_requested", {"end": "2027-06-14T00:00:00+03:00"}, [(OWNER, "extension_requested")]),
    ("extended", {"end": "2027-06-14T00:00:00+03:00", "total": 300_000}, [(RENTER, "extension_accepted")]),
    ("extension_declined", {"end": "2027-06-14T00:00:00+03:00"}, [(RENTER, "extension_declined")]),
    ("handover_code_issued", {}, []),
])
def test_extensions_go_to_the_party_who_must_act_or_learn(event_type: str, data: dict[str, Any],
                                                          expected: list[tuple[str, str]]) -> None:
    assert _told(_event("rental", event_type, {**data, "listing_id": LISTING})) == expected


def test_a_notification_carries_ids_title_event_fields_and_both_languages() -> None:
    event = _state("requested", None, "renter", start="2027-06-10", end="2027-06-12", quantity=1, total=207_900)
    (item,) = plan(event, RENTAL_FACTS).notifications
    assert item.data == {
        "listing_id": LISTING, "listing_title": TITLE, "rental_id": RENTAL,
        "start": "2027-06-10", "end": "2027-06-12", "quantity": 1, "total": 207_900,
        "text": {"ru": f"Новый запрос на аренду «{TITLE}»", "en": f"New rental request for “{TITLE}”"},
    }
    declined = plan(_state("declined", "requested", "owner", reason="Занят в эти дни"), RENTAL_FACTS)
    assert declined.notifications[0].data["reason"] == "Занят в эти дни"


def test_texts_name_who_cancelled_and_whose_rental_is_overdue() -> None:
    by_moderator = plan(_state("cancelled", "accepted", "moderator", refund_percent=100), RENTAL_FACTS)
    assert {i.data["text"]["en"] for i in by_moderator.notifications} == {
        f"A moderator cancelled the rental of “{TITLE}”"}
    assert by_moderator.notifications[0].data["refund_percent"] == 100
    overdue = {i.user_id: i.data["text"]["ru"] for i in plan(_state("overdue", "active", "system"),
                                                              RENTAL_FACTS).notifications}
    assert overdue[RENTER].startswith("Срок аренды") and overdue[OWNER].startswith("Арендатор ещё не вернул")


@pytest.mark.parametrize(("event_type", "data", "expected_type"), [
    ("published", {"first": True}, "listing_approved"),
    ("rejected", {"reason": "Нет фото"}, "listing_rejected"),
    ("revision_approved", {}, "listing_revision_approved"),
    ("revision_rejected", {"reason": "Реклама в описании"}, "listing_revision_rejected"),
])
def test_moderation_decisions_reach_the_listing_owner(event_type: str, data: dict[str, Any],
                                                      expected_type: str) -> None:
    facts = Facts(listing_id=LISTING, listing_title=TITLE, owner_id=OWNER)
    (item,) = plan(_event("listing", event_type, data), facts).notifications
    assert (item.user_id, item.type) == (OWNER, expected_type)
    assert item.data["listing_id"] == LISTING and "rental_id" not in item.data
    assert all(item.data[k] == v for k, v in data.items())


@pytest.mark.parametrize("event_type", ["created", "updated", "submitted", "paused", "resumed", "archived",
                                        "availability_changed"])
def test_the_owners_own_listing_steps_notify_nobody(event_type: str) -> None:
    assert _told(_event("listing", event_type, {}), Facts(listing_id=LISTING, owner_id=OWNER)) == []


def _message(sender: str | None, body: str = "Здравствуйте! Дрель свободна в субботу?") -> DomainEvent:
    message: dict[str, Any] = {
        "seq": 7, "sender_id": sender, "kind": "text" if sender else "system", "body": body, "data": {},
        "client_msg_id": "c-1" if sender else None, "created_at": "2027-06-01T10:15:00+00:00"}
    return _event("chat", "message_sent", {"message": message, "listing_id": LISTING, "owner_id": OWNER,
                                           "renter_id": RENTER})


def _chat_facts(**overrides: Any) -> Facts:
    base: dict[str, Any] = {"listing_id": LISTING, "listing_title": TITLE, "owner_id": OWNER, "renter_id": RENTER,
                            "rental_id": RENTAL, "unread": {OWNER: (3, 5), RENTER: (0, 1)}}
    return Facts(**{**base, **overrides})


def test_a_message_to_an_offline_party_notifies_them_once_per_room() -> None:
    result = plan(_message(RENTER), _chat_facts())
    (item,) = result.notifications
    assert (item.user_id, item.type) == (OWNER, "message_received")
    assert item.data["room_id"] == ROOM and item.data["rental_id"] == RENTAL and item.data["sender_id"] == RENTER
    assert item.data["preview"] == "Здравствуйте! Дрель свободна в субботу?" and item.data["seq"] == 7
    assert item.data["text"]["ru"] == f"Новое сообщение по объявлению «{TITLE}»"
    # Online, or already told about this room and not read yet: no second notification.
    assert plan(_message(RENTER), _chat_facts(online=frozenset({OWNER}))).notifications == ()
    assert plan(_message(RENTER), _chat_facts(notified=frozenset({OWNER}))).notifications == ()
    long = plan(_message(RENTER, "д" * 1000), _chat_facts()).notifications[0]
    assert len(long.data["preview"]) == 140


def test_every_message_updates_both_parties_badges_and_system_messages_notify_nobody() -> None:
    for sender in (RENTER, None):
        result = plan(_message(sender), _chat_facts())
        assert {(i.user_id, i.type) for i in result.live} == {(OWNER, "chat_unread"), (RENTER, "chat_unread")}
        badge = next(i for i in result.live if i.user_id == OWNER)
        assert badge.data == {"room_id": ROOM, "unread": 3, "total_unread": 5}
    assert plan(_message(None), _chat_facts()).notifications == ()


def test_reading_a_room_updates_the_readers_badge_and_clears_its_message_notice() -> None:
    result = plan(_event("chat", "read", {"user_id": RENTER, "read_seq": 7}), _chat_facts())
    assert result.notifications == ()
    assert [(i.user_id, i.type, i.data) for i in result.live] == [
        (RENTER, "chat_unread", {"room_id": ROOM, "unread": 0, "total_unread": 1})]
    assert result.clear_room_notices == ((RENTER, ROOM),)
    assert plan(_event("chat", "read", {"user_id": STRANGER, "read_seq": 7}), _chat_facts()).live == ()


def test_missing_parties_are_skipped_not_failed() -> None:
    assert _told(_state("overdue", "active", "system"), Facts(listing_id=LISTING, owner_id=OWNER)) == [
        (OWNER, "rental_overdue")]


def test_every_rule_has_a_text_and_a_subject_and_titles_are_not_templates() -> None:
    assert {rule.type for rule in RULES} | {"message_received"} == set(NOTIFICATION_TYPES)
    assert all("" in variants for variants in TEMPLATES.values())
    assert {f"{rule.kind}.*.{rule.event}" for rule in RULES} <= set(SUBJECTS)
    assert {"chat.*.message_sent", "chat.*.read"} <= set(SUBJECTS)
    braces = render("listing_approved", title="Палатка {x} «Зимняя»")["ru"]
    assert braces == "Объявление «Палатка {x} «Зимняя»» опубликовано"
    assert events.CHAT_UNREAD == "chat_unread"


def test_only_events_that_can_tell_someone_concern_the_consumer() -> None:
    assert concerns(_state("requested", None, "renter")) and concerns(_event("listing", "rejected", {}))
    assert concerns(_message(RENTER)) and concerns(_event("chat", "read", {"user_id": RENTER}))
    assert not concerns(_state("completed", "returned", "owner"))
    assert not concerns(_event("listing", "paused", {})) and not concerns(_event("chat", "opened", {}))


@pytest.mark.parametrize("broken", [
    {"type": "published", "kind": "listing", "entity_id": LISTING, "data": {}},  # no event id
    {"event_id": str(uuid.uuid4()), "type": "published", "kind": "listing", "entity_id": "drill", "data": {}},
    {"event_id": str(uuid.uuid4()), "type": "published", "kind": "listing", "entity_id": LISTING, "data": [1]},
])
def test_a_malformed_envelope_is_refused_at_parsing(broken: dict[str, Any]) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        DomainEvent.parse(broken)

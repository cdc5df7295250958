"""api/asyncapi.yaml documents every event the entities emit, and the relay's stream."""

from __future__ import annotations

import ast
import re
from typing import Any

import yaml

from actors.relay import STREAM
from sharehub.config import REPO_ROOT

SPEC = REPO_ROOT / "api" / "asyncapi.yaml"


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return spec


def _source(module: str) -> str:
    return (REPO_ROOT / "actors" / f"{module}.py").read_text()


def _emitted(module: str) -> set[str]:
    return set(re.findall(r'Event\("([a-z_]+)"', _source(module)))


def _events_by_subject_kind(module: str) -> dict[str, set[str]]:
    """The literal `Event(...)` types in `module`, by the kind they are published under: the one
    named in `about=(kind, id)`, or the emitting entity's own ("self")."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(_source(module))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Event"):
            continue
        if not (node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            continue  # the type is computed (a rental step's event type): see _rental_step_events
        kind = "self"
        for keyword in node.keywords:
            if keyword.arg == "about" and isinstance(keyword.value, ast.Tuple):
                first = keyword.value.elts[0]
                assert isinstance(first, ast.Constant), "about=(kind, id) names its kind literally"
                kind = str(first.value)
        found.setdefault(kind, set()).add(node.args[0].value)
    return found


def _rental_step_events() -> set[str]:
    """Every event type a rental step can have: the machine's default and each one it assigns."""
    source = _source("rental_machine")
    default = re.findall(r'event_type: str = "([a-z_]+)"', source)
    assert default, "the machine's default event type moved"
    return set(default) | set(re.findall(r'\.event_type = "([a-z_]+)"', source))


def _documented(spec: dict[str, Any], channel_name: str) -> tuple[set[str], set[str]]:
    channel = spec["channels"][channel_name]
    enum = set(channel["parameters"]["eventType"]["enum"])
    names = {spec["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]
             for ref in channel["messages"].values()}
    return enum, names


def test_every_listing_event_is_documented() -> None:
    spec = _spec()
    assert spec["asyncapi"].startswith("3.")
    enum, names = _documented(spec, "listingEvents")
    # The listing's own lifecycle, and the calendar changes its rental decisions publish.
    emitted = _emitted("listing") | _events_by_subject_kind("listing_rentals").get("self", set())
    assert emitted == enum == names


def test_every_rental_event_is_documented() -> None:
    spec = _spec()
    enum, names = _documented(spec, "rentalEvents")
    assert spec["channels"]["rentalEvents"]["address"].startswith("rental.")
    # A booking request's own event, and every step of the machine (published about the rental).
    emitted = _events_by_subject_kind("listing_rentals").get("rental", set()) | _rental_step_events()
    assert emitted == enum == names
    assert set(_events_by_subject_kind("listing_rentals")) <= {"self", "rental"}


def test_every_chat_event_is_documented() -> None:
    spec = _spec()
    enum, names = _documented(spec, "chatEvents")
    assert spec["channels"]["chatEvents"]["address"].startswith("chat.")
    # A room publishes only about itself.
    assert set(_events_by_subject_kind("chat")) == {"self"}
    assert _emitted("chat") == enum == names


def test_every_event_carries_its_channel_seq_and_epoch() -> None:
    envelope = _spec()["components"]["schemas"]["Envelope"]["properties"]
    assert {"seq", "epoch"} <= set(envelope)


def test_rental_events_name_both_parties() -> None:
    messages = _spec()["components"]["messages"]
    for ref in _spec()["channels"]["rentalEvents"]["messages"].values():
        message = messages[ref["$ref"].rsplit("/", 1)[1]]
        data = message["payload"]["allOf"][1]["properties"]["data"]
        assert {"listing_id", "renter_id", "owner_id"} <= set(data["required"]), message["name"]


def test_every_entity_kind_of_a_subject_is_in_the_envelope() -> None:
    spec = _spec()
    # NATS subjects only: the client websocket (`/ws`) has its own test (test_ws_protocol_contract).
    kinds = {channel["address"].split(".", 1)[0] for channel in spec["channels"].values()
             if not channel["address"].startswith("/")}
    assert kinds == set(spec["components"]["schemas"]["Envelope"]["properties"]["kind"]["enum"])


def test_the_stream_named_in_the_spec_is_the_relays() -> None:
    assert STREAM in SPEC.read_text()

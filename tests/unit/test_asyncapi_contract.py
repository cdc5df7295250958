"""api/asyncapi.yaml documents every event the entities emit, and the relay's stream."""

from __future__ import annotations

import re
from typing import Any

import yaml

from actors.relay import STREAM
from sharehub.config import REPO_ROOT

SPEC = REPO_ROOT / "api" / "asyncapi.yaml"


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return spec


def _emitted(module: str) -> set[str]:
    return set(re.findall(r'Event\("([a-z_]+)"', (REPO_ROOT / "actors" / f"{module}.py").read_text()))


def test_every_listing_event_is_documented() -> None:
    spec = _spec()
    assert spec["asyncapi"].startswith("3.")
    channel = spec["channels"]["listingEvents"]
    documented = set(channel["parameters"]["eventType"]["enum"])
    names = {spec["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]
             for ref in channel["messages"].values()}
    assert _emitted("listing") == documented == names


def test_the_stream_named_in_the_spec_is_the_relays() -> None:
    assert STREAM in SPEC.read_text()

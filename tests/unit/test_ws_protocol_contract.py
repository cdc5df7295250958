"""api/asyncapi.yaml documents the websocket protocol exactly: every message type the gateway
parses or sends is there and nothing else, with the same fields, and what the code encodes (and
accepts) validates against the documented schemas."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from pydantic import BaseModel
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.realtime import protocol
from gateway.realtime.protocol import CLIENT_MESSAGES, SERVER_TYPES
from sharehub.config import REPO_ROOT
from sharehub.errors import ApiError

SPEC = REPO_ROOT / "api" / "asyncapi.yaml"
BASE = "urn:sharehub:asyncapi"


@functools.cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return spec


@functools.cache
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(
        BASE, Resource.from_contents(_spec(), default_specification=DRAFT202012))
    return registry


def _operation_messages(operation: str) -> dict[str, dict[str, Any]]:
    """name -> message object, for the messages an operation on the websocket lists."""
    spec = _spec()
    found: dict[str, dict[str, Any]] = {}
    channel = spec["operations"][operation]["channel"]["$ref"].rsplit("/", 1)[1]
    assert channel == "websocket"
    for ref in spec["operations"][operation]["messages"]:
        key = ref["$ref"].rsplit("/", 1)[1]
        message_ref = spec["channels"]["websocket"]["messages"][key]["$ref"]
        message = spec["components"]["messages"][message_ref.rsplit("/", 1)[1]]
        found[message["name"]] = message
    return found


def _validator(message: dict[str, Any]) -> jsonschema.protocols.Validator:
    schema = {"$ref": BASE + message["payload"]["$ref"]}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    return validator


def _schema(message: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _spec()["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
    return schema


CLIENT = _operation_messages("receiveClientMessages")
SERVER = _operation_messages("sendServerMessages")


def test_every_client_message_the_gateway_parses_is_documented_and_vice_versa() -> None:
    assert set(CLIENT) == set(CLIENT_MESSAGES)
    for name, message in CLIENT.items():
        schema = _schema(message)
        assert schema["properties"]["type"] == {"const": name}
        model: type[BaseModel] = CLIENT_MESSAGES[name]
        assert set(schema["properties"]) == set(model.model_fields), name
        required = {field for field, info in model.model_fields.items() if info.is_required()}
        assert set(schema["required"]) == required, name
        assert schema["additionalProperties"] is False


def test_every_server_message_the_gateway_sends_is_documented_and_vice_versa() -> None:
    assert set(SERVER) == SERVER_TYPES
    for name, message in SERVER.items():
        assert _schema(message)["properties"]["type"] == {"const": name}
    # Every message the encoders build names a documented type.
    source = (REPO_ROOT / "gateway" / "realtime" / "protocol.py").read_text()
    assert set(re.findall(r'\{"type": "([a-z]+)"', source)) == SERVER_TYPES


def _server_samples() -> list[bytes]:
    chat = f"chat:{uuid.uuid4()}"
    listing = f"listing:{uuid.uuid4()}"
    payload = {"event_id": str(uuid.uuid4()), "type": "availability_changed", "kind": "listing",
               "entity_id": str(uuid.uuid4()), "version": 7, "occurred_at": "2027-05-31T18:02:11.411902+00:00",
               "data": {"change": "held", "units": 1}, "seq": 12, "epoch": "3fa9c2d1"}
    with pytest.raises(ApiError) as invalid:
        protocol.validate({"type": "subscribe", "channel": "user:me", "since": -1})
    return [
        protocol.subscribed(listing, "3fa9c2d1", 11, "1"), protocol.subscribed("user:me", "", 0),
        protocol.unsubscribed(listing, "2"), protocol.pong("3"), protocol.pong(),
        protocol.resync(listing, "3fa9c2d1", 11, "4"), protocol.resync(chat, "3fa9c2d1", 3),
        protocol.event(listing, payload), protocol.presence(chat, str(uuid.uuid4()), True),
        protocol.typing(chat, str(uuid.uuid4())), protocol.reply({"room_id": str(uuid.uuid4()), "read_seq": 3,
                                                                   "unread": 0}, "5"),
        protocol.error("rate_limited", "Too many messages; slow down.", "6"), protocol.api_error(invalid.value, "7"),
    ]


def test_what_the_gateway_sends_validates_against_the_documented_schemas() -> None:
    seen = set()
    for raw in _server_samples():
        message = orjson.loads(raw)
        seen.add(message["type"])
        _validator(SERVER[message["type"]]).validate(message)
    assert seen == SERVER_TYPES


CHANNEL = f"chat:{uuid.uuid4()}"
VALID_CLIENT = [
    {"type": "subscribe", "channel": f"listing:{uuid.uuid4()}", "since": 3, "epoch": "3fa9c2d1", "id": "1"},
    {"type": "subscribe", "channel": "user:me"},
    {"type": "unsubscribe", "channel": CHANNEL, "id": "x"},
    {"type": "ping"},
    {"type": "send", "channel": CHANNEL, "client_msg_id": "m-1", "text": "Привет", "attachments": [str(uuid.uuid4())]},
    {"type": "read", "channel": CHANNEL, "up_to": 4},
    {"type": "typing", "channel": CHANNEL},
]
INVALID_CLIENT = [
    {"type": "subscribe"},
    {"type": "subscribe", "channel": "user:42"},
    {"type": "subscribe", "channel": "user:me", "since": -1},
    {"type": "subscribe", "channel": "user:me", "epoch": ""},
    {"type": "subscribe", "channel": "user:me", "extra": True},
    {"type": "ping", "id": ""},
    {"type": "ping", "id": "x" * 65},
    {"type": "send", "channel": CHANNEL, "client_msg_id": "has space", "text": "hi"},
    {"type": "send", "channel": CHANNEL, "client_msg_id": "m", "text": ""},
    {"type": "send", "channel": CHANNEL, "client_msg_id": "m", "text": "x" * 4001},
    {"type": "send", "channel": "user:me", "client_msg_id": "m", "text": "hi"},
    {"type": "read", "channel": CHANNEL},
    {"type": "typing", "channel": "listing:" + str(uuid.uuid4())},
]


@pytest.mark.parametrize("message", VALID_CLIENT)
def test_valid_client_messages_are_accepted_by_the_schema_and_the_gateway(message: dict[str, Any]) -> None:
    _validator(CLIENT[message["type"]]).validate(message)
    assert protocol.validate(message).type == message["type"]


@pytest.mark.parametrize("message", INVALID_CLIENT)
def test_invalid_client_messages_are_refused_by_the_schema_and_the_gateway(message: dict[str, Any]) -> None:
    assert not _validator(CLIENT[message["type"]]).is_valid(message)
    with pytest.raises(ApiError) as refused:
        protocol.validate(message)
    assert refused.value.code == "validation_failed"


def test_the_documented_examples_are_valid() -> None:
    for message in [*CLIENT.values(), *SERVER.values()]:
        for example in message.get("examples", []):
            _validator(message).validate(example["payload"])

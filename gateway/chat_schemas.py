"""Request bodies and queries for chats (shape only; the rules live in actors/chat.py)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from actors.chat import MAX_ATTACHMENTS, MAX_TEXT_CHARS
from gateway.bodies import Body

ClientMessageId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
# An RFC 3339 instant with its offset, as `next_before` is written (api/openapi.yaml says the same
# pattern). Pydantic's lax datetime alone would also take Unix timestamps, bare dates and
# offset-less times.
INSTANT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"


def _instant(value: Any) -> datetime:
    if not isinstance(value, str) or not re.fullmatch(INSTANT_PATTERN, value):
        raise ValueError("Input should be an RFC 3339 date-time with an offset")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):  # 2027-02-30, an offset of 24 hours or more, year 1 minus an hour
        raise ValueError("Input should be a valid RFC 3339 date-time") from None


Instant = Annotated[datetime, BeforeValidator(_instant)]


class OpenChat(Body):
    listing_id: uuid.UUID


class NewMessage(Body):
    client_msg_id: ClientMessageId
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    attachments: Annotated[tuple[uuid.UUID, ...], Field(max_length=MAX_ATTACHMENTS)] = ()


class ReadMarker(Body):
    up_to: Annotated[int, Field(ge=0, le=2**53)]


class ChatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: Annotated[int, Field(ge=1, le=100)] = 30
    before: Instant | None = None


class MessagesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    before: Annotated[int, Field(ge=1, le=2**53)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50

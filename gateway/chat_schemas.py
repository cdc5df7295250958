"""Request bodies and queries for chats (shape only; the rules live in actors/chat.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from actors.chat import MAX_ATTACHMENTS, MAX_TEXT_CHARS
from gateway.bodies import Body

ClientMessageId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


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
    before: datetime | None = None


class MessagesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    before: Annotated[int, Field(ge=1, le=2**53)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50

"""The query of `GET /api/v1/notifications` and its page cursor.

The cursor is the position of the last item of a page, (created_at, id), written as
`<microseconds since the Unix epoch>.<id as 32 hex digits>`: keyset paging, so a notification
arriving between two pages never shifts or repeats items. Clients treat it as opaque."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# 16 digits of microseconds reach the year 2286: every value the pattern allows decodes.
CURSOR_PATTERN = r"^[0-9]{1,16}\.[0-9a-f]{32}$"
Cursor = Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)]


class NotificationsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unread: bool = False
    before: Cursor | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20


def encode_cursor(position: tuple[datetime, uuid.UUID]) -> str:
    created_at, notification_id = position
    return f"{(created_at - _EPOCH) // _MICROSECOND}.{notification_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Only for values matching CURSOR_PATTERN (the query model has checked it)."""
    micros, hex_id = cursor.split(".")
    return _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=hex_id)

"""Request bodies and queries for rentals (validation only; the rules live in the listing entity
and actors/rental_machine.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.bodies import Body

# A day (YYYY-MM-DD) for listings rented by the day, an RFC 3339 date-time with an offset for
# listings rented by the hour; which one applies is the listing's business (422 otherwise).
Moment = Annotated[str, StringConstraints(
    pattern=r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?$", max_length=40,
)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00]*$")]
RentalStatus = Literal["requested", "accepted", "declined", "cancelled", "expired", "active", "overdue", "returned",
                       "completed"]


class RentalRequest(Body):
    listing_id: uuid.UUID
    start: Moment
    end: Moment
    quantity: Annotated[int, Field(ge=1, le=1000)] = 1


class ReasonBody(Body):
    reason: Reason | None = None


class HandoverConfirmation(Body):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class ExtensionBody(Body):
    """The renter asks with `end`; the owner answers with `decision`."""

    end: Moment | None = None
    decision: Literal["accept", "decline"] | None = None


class RentalsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["renter", "owner"] = "renter"
    status: RentalStatus | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0

"""Request bodies as pydantic models (validation only; the rules live in the actions)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from gateway.bodies import Body

Email = Annotated[str, StringConstraints(min_length=3, max_length=254)]
# Length rules (8-128) are checked by the password policy with a specific error code; this bound
# only stops absurd payloads before they reach argon2.
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Role = Literal["user", "owner", "moderator", "admin"]


class RegisterBody(Body):
    email: Email
    password: Password
    display_name: DisplayName


class LoginBody(Body):
    email: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    password: Password


class RefreshBody(Body):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class ProfilePatch(Body):
    display_name: DisplayName | None = None
    phone: Phone | None = None
    bio: Annotated[str, StringConstraints(max_length=2000)] | None = None
    city: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    locale: Literal["ru", "en"] | None = None


class PasswordChangeBody(Body):
    current_password: Password
    new_password: Password


class RolesBody(Body):
    roles: Annotated[list[Role], Field(max_length=4)]


class StatusBody(Body):
    status: Literal["active", "banned"]


class CreateUserBody(Body):
    email: Email
    password: Password
    display_name: DisplayName
    roles: Annotated[list[Role], Field(max_length=4)] = ["user"]

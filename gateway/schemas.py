"""Request bodies as pydantic models (validation only; the rules live in the actions)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from gateway.bodies import Body
from sharehub.accounts import EMAIL_PATTERN

# The same pattern as sharehub.accounts and api/openapi.yaml: checked on the raw value, then the
# address is stored NFKC-normalised and lower-cased.
Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
# A password being checked (login, current password): any size up to a bound that keeps absurd
# payloads away from argon2. New passwords get the policy's own codes (8-128, not common).
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
# Visible text: no control characters (C0, DEL, C1; NUL cannot be stored), no surrounding spaces.
_NAME_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=_NAME_PATTERN)]
City = Annotated[str, StringConstraints(max_length=100, pattern=r"^(?:" + _NAME_PATTERN[1:-1] + r")?$")]
Bio = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Role = Literal["user", "owner", "moderator", "admin"]


class RegisterBody(Body):
    email: Email
    password: Password
    display_name: DisplayName


class LoginBody(Body):
    email: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    password: Password


class PasswordResetBody(Body):
    email: Email


class PasswordResetConfirmBody(Body):
    token: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    new_password: Password


class RefreshBody(Body):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class ProfilePatch(Body):
    display_name: DisplayName | None = None
    phone: Phone | None = None
    bio: Bio | None = None
    city: City | None = None
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
    roles: Annotated[tuple[Role, ...], Field(max_length=4)] = ("user",)

"""Password policy and hashing (OWASP Password Storage Cheat Sheet, NIST SP 800-63B).

- argon2id, m = 19 MiB, t = 2, p = 1: OWASP's minimum recommended configuration.
- 8 to 128 characters, no composition rules, but not a commonly used or breached password and not
  the account's own e-mail or name."""

from __future__ import annotations

import functools
import unicodedata
from importlib.resources import files

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, type=Type.ID)
# Verified when the e-mail is unknown, so a login for a missing account costs the same time as a
# wrong password and the response time does not reveal which accounts exist.
_DUMMY_HASH = _HASHER.hash("sharehub-dummy-password-for-timing")


@functools.cache
def _common_passwords() -> frozenset[str]:
    text = files("sharehub.security").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line)


def normalise_password(password: str) -> str:
    # NFKC so the same password typed on different keyboards/IMEs hashes the same.
    return unicodedata.normalize("NFKC", password)


def password_problem(password: str, *, email: str = "", display_name: str = "") -> str | None:
    """Why this password is refused (a stable code), or None if it is acceptable."""
    # Length as sent (code points), the same way the API's JSON Schema counts it.
    if len(password) < MIN_PASSWORD_LENGTH:
        return "password_too_short"
    if len(password) > MAX_PASSWORD_LENGTH:
        return "password_too_long"
    lowered = normalise_password(password).casefold()
    if lowered in _common_passwords():
        return "password_too_common"
    local_part = email.split("@", 1)[0].casefold()
    if lowered in {email.casefold(), local_part, display_name.casefold()} - {""}:
        return "password_matches_account"
    return None


def hash_password(password: str) -> str:
    return _HASHER.hash(normalise_password(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work check: an unknown account still pays for one argon2 verification."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, normalise_password(password)) and (
            password_hash is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)

"""Password policy and hashing (OWASP Password Storage Cheat Sheet, NIST SP 800-63B).

- argon2id, m = 19 MiB, t = 2, p = 1: OWASP's minimum recommended configuration.
- 8 to 128 characters, no composition rules, but not a commonly used or breached password and not
  the account's own e-mail or name.
- Request paths hash and verify through `hashing_pool(settings)`: threads of their own with a
  bounded line (`HashingPool`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import unicodedata
from collections.abc import Callable
from importlib.resources import files
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from sharehub.config import Settings
from sharehub.errors import ApiError

T = TypeVar("T")

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


# A client told "busy" comes back after this long; by then the line has moved on (a hash takes
# ~50 ms of one core).
AUTH_BUSY_RETRY_SECS = 1


class HashingPool:
    """argon2 on threads of its own, with a bounded line.

    Its own threads: `asyncio.to_thread` shares the loop's default executor with everything else
    that blocks (Ray calls, search index commits, readiness checks), so a burst of those would
    make logins wait, and a login flood would fill it for them in turn. One thread per core:
    argon2 is CPU-bound (argon2-cffi releases the GIL while hashing), so more threads only add
    latency. A bounded line: at most `workers` hashes run and `queue` wait; one more is refused
    at once with 503 auth_busy (and Retry-After) instead of queueing work nobody will wait for
    - each waiting hash is a client already a hash-time late."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.admitted = 0  # running or waiting; changed on the event loop's thread only
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on the pool's threads; 503 auth_busy when the line is full."""
        if self.admitted >= self.capacity:
            error = ApiError(503, "auth_busy", "Too many logins at once; try again in a moment.")
            error.headers["Retry-After"] = str(AUTH_BUSY_RETRY_SECS)
            raise error
        loop = asyncio.get_running_loop()
        future = self._executor.submit(fn, *args)
        self.admitted += 1
        # The slot is freed when the work is done (or dropped from the line), not when the caller
        # stops waiting: a cancelled request must not let more work in than the bound.
        future.add_done_callback(lambda _: _call_soon(loop, self._release))
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        self.admitted -= 1

    async def hash(self, password: str) -> str:
        return await self.run(hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self.run(verify_password, password_hash, password)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody counts any more
        loop.call_soon_threadsafe(callback)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (cpusets, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def _pool(workers: int, queue: int) -> HashingPool:
    return HashingPool(workers, queue)


def hashing_pool(settings: Settings) -> HashingPool:
    """The process's pool for these settings (one per process, created on first use)."""
    return _pool(settings.password_hash_workers or _cores(), max(settings.password_hash_queue, 0))

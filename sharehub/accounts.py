"""Account actions: register, log in, refresh, log out, profiles, roles, bans.

Handlers validate input and call one of these; these enforce the rules and talk to the stores.
Passwords are hashed off the event loop (argon2id costs ~50 ms of CPU), on the hashing pool's own
threads (sharehub/security/passwords.py `HashingPool`)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sharehub.errors import ApiError, forbidden, not_found, rate_limited, unauthorized
from sharehub.platform import Platform
from sharehub.ratelimit import Reservation, SlidingWindowLog, release, reserve_together
from sharehub.revocation import mark_sessions_revoked, publish_user_state
from sharehub.security.passwords import hashing_pool, needs_rehash, password_problem
from sharehub.security.tokens import AccessClaims, TokenInvalid
from storage import sessions as session_store
from storage import users as user_store
from storage.db import transaction
from storage.users import UserRow

EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[^@\s\x00-\x1f\x7f-\x9f.]+(\.[^@\s\x00-\x1f\x7f-\x9f.]+)+$"
_EMAIL_RE = re.compile(EMAIL_PATTERN)
_TRUSTED_IP_SECS = 30 * 24 * 3600
_FAILURE_WINDOW_SECS = 3600


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
        }


def normalise_email(raw: str) -> str:
    """Trimmed and lower-cased. Not NFKC: compatibility mapping can turn a valid address into an
    invalid one (U+00A8 becomes a space), so the address is checked as typed."""
    stripped = raw.strip()
    email = stripped.lower()
    if len(email) > 254 or not _EMAIL_RE.match(stripped):
        raise ApiError(422, "validation_failed", "Invalid e-mail address.",
                       errors=[{"path": "/email", "code": "invalid_email", "message": "Not an e-mail address."}])
    return email


def password_error(code: str, field: str = "password") -> ApiError:
    messages = {
        "password_too_short": "Use at least 8 characters.",
        "password_too_long": "Use at most 128 characters.",
        "password_too_common": "This password is too common; choose another.",
        "password_matches_account": "Do not use your e-mail or name as the password.",
    }
    return ApiError(422, "validation_failed", "The password is not acceptable.",
                    errors=[{"path": f"/{field}", "code": code, "message": messages[code]}])


async def register(platform: Platform, *, email: str, password: str, display_name: str) -> UserRow:
    email = normalise_email(email)
    problem = password_problem(password, email=email, display_name=display_name)
    if problem:
        raise password_error(problem)
    # Hash before looking for a duplicate so a taken e-mail answers in the same time as a new one.
    password_hash = await hashing_pool(platform.settings).hash(password)
    async with transaction(platform.db, "register_user") as conn:
        user = await user_store.insert_user(
            conn, email=email, password_hash=password_hash, display_name=display_name, roles=frozenset({"user"})
        )
    if user is None:
        raise ApiError(409, "email_taken", "An account with this e-mail already exists.")
    return user


def _subject(email: str) -> str:
    # Rate-limit keys never hold the address itself.
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class LoginLimiter:
    """≤ N failed logins per account and per IP in any hour. An IP that logged in to the account
    successfully in the last 30 days is 'trusted' for it and counts against its own (account, IP)
    window instead, so an attacker hammering an account cannot lock its owner out.

    Every attempt takes a slot in both windows atomically *before* its password is verified
    (`reserve`: one Lua script for both), and gives it back when it turns out not to be a
    failure (`succeeded`, `release`). Reading the count before the attempt and recording the
    failure after it let a parallel burst through whole: every request read the same count."""

    def __init__(self, platform: Platform) -> None:
        settings = platform.settings
        self.redis = platform.redis
        self.per_account = SlidingWindowLog(
            platform.redis, prefix="rl:login:acct", limit=settings.login_failures_per_account_per_hour,
            window_secs=_FAILURE_WINDOW_SECS,
        )
        self.per_ip = SlidingWindowLog(
            platform.redis, prefix="rl:login:ip", limit=settings.login_failures_per_ip_per_hour,
            window_secs=_FAILURE_WINDOW_SECS,
        )

    async def _trusted(self, account: str, ip: str) -> bool:
        return bool(await self.redis.sismember(f"auth:trusted:{account}", ip))

    def _account_subject(self, account: str, ip: str, trusted: bool) -> str:
        return f"{account}:{ip}" if trusted else account

    async def reserve(self, email: str, ip: str) -> Reservation:
        """A failure slot for this attempt in the account's and the IP's window; 429 when either
        is full. (Whether the IP is trusted is read first: it only picks the account window, and
        each window is bounded atomically on its own.)"""
        account = _subject(email)
        trusted = await self._trusted(account, ip)
        taken = await reserve_together(self.redis, [(self.per_account, self._account_subject(account, ip, trusted)),
                                                    (self.per_ip, ip)])
        if isinstance(taken, int):
            raise rate_limited(taken, "Too many failed logins; try again later.")
        return taken

    async def release(self, attempt: Reservation) -> None:
        """The attempt was not a failure (no answer, or a suspended account): its slot is free."""
        await release(self.redis, attempt)

    async def succeeded(self, email: str, ip: str, attempt: Reservation) -> None:
        account = _subject(email)
        key = f"auth:trusted:{account}"
        async with self.redis.pipeline(transaction=False) as pipe:
            for window in attempt.keys:
                pipe.zrem(window, attempt.entry)
            pipe.delete(self.per_account.key(f"{account}:{ip}"))
            pipe.sadd(key, ip)
            pipe.expire(key, _TRUSTED_IP_SECS)
            await pipe.execute()


async def _issue_pair(platform: Platform, user: UserRow, session_id: uuid.UUID, refresh_jti: uuid.UUID) -> TokenPair:
    tokens = platform.tokens
    access, _ = tokens.issue_access(user.id, session_id, user.roles, user.auth_epoch)
    refresh, _ = tokens.issue_refresh(user.id, session_id, refresh_jti)
    return TokenPair(access, refresh, tokens.access_ttl_secs, tokens.refresh_ttl_secs, session_id)


async def login(platform: Platform, *, email: str, password: str, ip: str, user_agent: str) -> TokenPair:
    invalid = unauthorized("invalid_credentials", "Wrong e-mail or password.")
    hashing = hashing_pool(platform.settings)
    try:
        email = normalise_email(email)
    except ApiError:
        await hashing.verify(None, password)
        raise invalid from None
    limiter = LoginLimiter(platform)
    attempt = await limiter.reserve(email, ip)
    try:
        user = await user_store.get_user_by_email(platform.db, email)
        ok = await hashing.verify(user.password_hash if user else None, password)
    except BaseException:
        await limiter.release(attempt)  # no answer (the database, a busy pool): not a failure
        raise
    if not ok or user is None:
        raise invalid  # the reserved slot stays taken: this was a failed login
    if user.status != "active":
        await limiter.release(attempt)
        raise ApiError(403, "account_suspended", "This account is suspended.")
    await limiter.succeeded(email, ip, attempt)
    session_id, refresh_jti = uuid.uuid4(), uuid.uuid4()
    async with transaction(platform.db, "login") as conn:
        await session_store.create_session(
            conn, session_id=session_id, user_id=user.id, refresh_jti=refresh_jti,
            ttl_secs=platform.settings.refresh_token_ttl_secs, user_agent=user_agent, ip=ip,
        )
        if needs_rehash(user.password_hash):
            await user_store.set_password_hash(
                conn, user.id, await hashing.hash(password), bump_epoch=False
            )
    return await _issue_pair(platform, user, session_id, refresh_jti)


async def refresh(platform: Platform, *, refresh_token: str) -> TokenPair:
    try:
        claims = platform.tokens.verify_refresh(refresh_token)
    except TokenInvalid as exc:
        raise unauthorized(exc.code, "The refresh token is not valid.") from exc
    new_jti = uuid.uuid4()
    async with transaction(platform.db, "refresh_tokens") as conn:
        rotated = await session_store.rotate_refresh(
            conn, session_id=claims.session_id, presented_jti=claims.jti, new_jti=new_jti,
            ttl_secs=platform.settings.refresh_token_ttl_secs,
        )
        session = None if rotated else await session_store.get_session(conn, claims.session_id)
        reused = session is not None and session.revoked_at is None and session.refresh_jti != claims.jti
        if reused:
            # A rotated-out token came back: it was stolen or leaked. Kill the whole family.
            await session_store.revoke_session(conn, claims.session_id, "refresh_reuse")
        user = await user_store.get_user(conn, claims.user_id) if rotated else None
        if user is not None and user.status != "active":
            await session_store.revoke_session(conn, claims.session_id, "banned")
    if reused:
        await mark_sessions_revoked(platform, [claims.session_id])
        raise unauthorized("refresh_token_reused", "This refresh token was already used; log in again.")
    if not rotated or user is None:
        raise unauthorized("session_revoked", "This login has ended; log in again.")
    if user.status != "active":
        await mark_sessions_revoked(platform, [claims.session_id])
        raise ApiError(403, "account_suspended", "This account is suspended.")
    return await _issue_pair(platform, user, claims.session_id, new_jti)


async def logout(platform: Platform, principal: AccessClaims) -> None:
    async with transaction(platform.db, "logout") as conn:
        await session_store.revoke_session(conn, principal.session_id, "logout")
    await mark_sessions_revoked(platform, [principal.session_id])


async def revoke_own_session(platform: Platform, principal: AccessClaims, session_id: uuid.UUID) -> None:
    async with transaction(platform.db, "revoke_session") as conn:
        session = await session_store.get_session(conn, session_id)
        if session is None or session.user_id != principal.user_id:
            raise not_found("session")
        await session_store.revoke_session(conn, session_id, "revoked_by_user")
    await mark_sessions_revoked(platform, [session_id])


async def change_password(
    platform: Platform, principal: AccessClaims, *, current_password: str, new_password: str
) -> TokenPair:
    """New password; every other login ends, this one continues with fresh tokens. Wrong
    current passwords are limited per user (a stolen access token must not become a way to
    guess the password behind it), a slot reserved before verifying as for logins."""
    user = await user_store.get_user(platform.db, principal.user_id)
    if user is None:
        raise unauthorized("token_revoked")
    hashing = hashing_pool(platform.settings)
    failures = SlidingWindowLog(platform.redis, prefix="rl:pwchange", window_secs=_FAILURE_WINDOW_SECS,
                                limit=platform.settings.password_change_failures_per_hour)
    attempt = await failures.reserve(str(user.id))
    if isinstance(attempt, int):
        raise rate_limited(attempt, "Too many wrong passwords; try again later.")
    try:
        ok = await hashing.verify(user.password_hash, current_password)
    except BaseException:
        await release(platform.redis, attempt)
        raise
    if not ok:
        raise ApiError(403, "wrong_password", "The current password is wrong.")
    await release(platform.redis, attempt)
    problem = password_problem(new_password, email=user.email, display_name=user.display_name)
    if problem:
        raise password_error(problem, "new_password")
    new_hash = await hashing.hash(new_password)
    new_jti = uuid.uuid4()
    async with transaction(platform.db, "change_password") as conn:
        await user_store.set_password_hash(conn, user.id, new_hash, bump_epoch=True)
        ended = await session_store.revoke_user_sessions(conn, user.id, "password_changed", keep=principal.session_id)
        await conn.execute(
            "UPDATE auth_sessions SET refresh_jti = $2, generation = generation + 1 WHERE id = $1",
            principal.session_id, new_jti,
        )
        updated = await user_store.get_user(conn, user.id)
    assert updated is not None
    await mark_sessions_revoked(platform, ended)
    await publish_user_state(platform, updated.id, updated.auth_epoch, updated.status)
    return await _issue_pair(platform, updated, principal.session_id, new_jti)


async def get_user_or_404(platform: Platform, user_id: uuid.UUID) -> UserRow:
    user = await user_store.get_user(platform.db, user_id)
    if user is None:
        raise not_found("user")
    return user


async def update_profile(platform: Platform, principal: AccessClaims, changes: dict[str, Any]) -> UserRow:
    async with transaction(platform.db, "update_profile") as conn:
        user = await user_store.update_profile(conn, principal.user_id, changes)
    if user is None:
        raise not_found("user")
    return user


async def set_roles(platform: Platform, actor: AccessClaims, user_id: uuid.UUID, roles: frozenset[str]) -> UserRow:
    roles = roles | {"user"}
    if user_id == actor.user_id and "admin" not in roles:
        # The last safeguard against an admin locking everyone out by accident.
        raise forbidden("Admins cannot remove their own admin role.")
    async with transaction(platform.db, "set_roles") as conn:
        user = await user_store.set_roles(conn, user_id, roles)
    if user is None:
        raise not_found("user")
    await publish_user_state(platform, user.id, user.auth_epoch, user.status)
    return user


async def set_status(platform: Platform, actor: AccessClaims, user_id: uuid.UUID, status: str) -> UserRow:
    if user_id == actor.user_id:
        raise forbidden("You cannot change your own account status.")
    async with transaction(platform.db, "set_user_status") as conn:
        user = await user_store.set_status(conn, user_id, status)
        ended = await session_store.revoke_user_sessions(conn, user_id, "banned") if status == "banned" else []
    if user is None:
        raise not_found("user")
    await mark_sessions_revoked(platform, ended)
    await publish_user_state(platform, user.id, user.auth_epoch, user.status)
    return user


async def create_user(
    platform: Platform, *, email: str, password: str, display_name: str, roles: frozenset[str]
) -> UserRow:
    """Registration with roles (admin API and `sharehub user create`)."""
    user = await register(platform, email=email, password=password, display_name=display_name)
    if roles - {"user"}:
        async with transaction(platform.db, "create_user_roles") as conn:
            updated = await user_store.set_roles(conn, user.id, roles | {"user"})
        assert updated is not None
        return updated
    return user

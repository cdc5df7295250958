"""Password reset without account enumeration.

The API records "someone asked to reset <e-mail>" and answers 202 — the same work and the same
answer whether or not the account exists. A background step turns requests for real, active
accounts into a single-use token (stored hashed, valid 1 hour) and a localised e-mail in the
outbox. Confirming with the token sets the new password, ends every login and spends every other
outstanding token of the account."""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlencode

from sharehub.accounts import normalise_email, password_error
from sharehub.errors import ApiError, rate_limited
from sharehub.mailer import render
from sharehub.platform import Platform
from sharehub.ratelimit import SlidingWindowLog
from sharehub.revocation import mark_sessions_revoked, publish_user_state
from sharehub.security.passwords import hashing_pool, password_problem
from storage import email_outbox, password_resets
from storage import sessions as session_store
from storage import users as user_store
from storage.db import transaction

TOKEN_TTL_SECS = 3600
_MAILS_PER_ACCOUNT_PER_HOUR = 3
_BATCH = 50


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def request_reset(platform: Platform, *, email: str, ip: str) -> None:
    limiter = SlidingWindowLog(platform.redis, prefix="rl:reset:ip",
                               limit=platform.settings.password_resets_per_ip_per_hour, window_secs=3600)
    # The slot is taken before anything else (one script: trim, count, add), so a parallel burst
    # gets exactly the limit - a check followed by a record would let it through.
    taken = await limiter.reserve(ip)
    if isinstance(taken, int):
        raise rate_limited(taken, "Too many password reset requests; try again later.")
    await password_resets.record_request(platform.db, normalise_email(email))


async def process_requests(platform: Platform) -> int:
    """Turn pending requests into tokens and e-mails; returns how many e-mails were queued."""
    queued = 0
    account_limit = SlidingWindowLog(platform.redis, prefix="rl:reset:acct", limit=_MAILS_PER_ACCOUNT_PER_HOUR,
                                     window_secs=3600)
    async with transaction(platform.db, "process_reset_requests") as conn:
        for email in await password_resets.take_requests(conn, _BATCH):
            user = await user_store.get_user_by_email(conn, email)
            if user is None or user.status != "active":
                continue
            # A flood of requests for one address must not become a flood of e-mails to it.
            subject_key = hashlib.sha256(email.encode()).hexdigest()[:32]
            if isinstance(await account_limit.reserve(subject_key), int):
                continue
            token = secrets.token_urlsafe(32)
            await password_resets.create_token(conn, token_hash=_token_hash(token), user_id=user.id,
                                               ttl_secs=TOKEN_TTL_SECS)
            link = f"{platform.settings.web_app_url}/reset-password?{urlencode({'token': token})}"
            mail = render(platform.settings, "password_reset", user.locale, display_name=user.display_name,
                          reset_url=link, ttl_minutes=TOKEN_TTL_SECS // 60)
            await email_outbox.enqueue(conn, to_address=user.email, template="password_reset",
                                       locale=user.locale, subject=mail.subject, body_text=mail.body_text)
            queued += 1
    return queued


async def confirm_reset(platform: Platform, *, token: str, new_password: str) -> None:
    invalid = ApiError(400, "invalid_reset_token", "This reset link is invalid, used or expired.")
    token_hash = _token_hash(token)
    owner = await password_resets.token_owner(platform.db, token_hash)
    user = await user_store.get_user(platform.db, owner) if owner else None
    if user is None:
        raise invalid
    problem = password_problem(new_password, email=user.email, display_name=user.display_name)
    if problem:
        raise password_error(problem, "new_password")
    new_hash = await hashing_pool(platform.settings).hash(new_password)
    async with transaction(platform.db, "confirm_password_reset") as conn:
        if await password_resets.use_token(conn, token_hash) != user.id:
            raise invalid  # spent by a concurrent confirmation
        await password_resets.invalidate_user_tokens(conn, user.id)
        await user_store.set_password_hash(conn, user.id, new_hash, bump_epoch=True)
        ended = await session_store.revoke_user_sessions(conn, user.id, "password_changed")
        updated = await user_store.get_user(conn, user.id)
    assert updated is not None
    await mark_sessions_revoked(platform, ended)
    await publish_user_state(platform, updated.id, updated.auth_epoch, updated.status)

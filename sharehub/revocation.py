"""Making access tokens stop working before they expire, across every gateway process.

Access tokens are checked without a database hit. Two Redis facts make them revocable at once:
- `auth:revoked:<session id>`: set on logout or family revocation, for as long as an access token
  of that session could still be valid;
- `auth:user:<user id>` = "<auth_epoch>:<status>": a cache of the user's row. A token issued under an
  older epoch (before a role change, ban or password change) is refused. A miss reloads from
  Postgres, so losing Redis data never resurrects a token."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sharehub.platform import Platform
from sharehub.security.tokens import AccessClaims, TokenInvalid
from storage.users import get_auth_state

_USER_CACHE_SECS = 3600
# Keys per MGET in a batch check (one huge command would stall Redis for everyone else).
_MGET_CHUNK = 1000


def _revoked_key(session_id: uuid.UUID) -> str:
    return f"auth:revoked:{session_id}"


def _user_key(user_id: uuid.UUID) -> str:
    return f"auth:user:{user_id}"


async def mark_sessions_revoked(platform: Platform, session_ids: list[uuid.UUID]) -> None:
    if not session_ids:
        return
    ttl = platform.settings.access_token_ttl_secs + 60
    async with platform.redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.set(_revoked_key(session_id), 1, ex=ttl)
        await pipe.execute()


async def publish_user_state(platform: Platform, user_id: uuid.UUID, epoch: int, status: str) -> None:
    """Call after a commit that changed the user's epoch or status. A plain SET overwrites whatever a
    concurrent reader cached; readers only SET NX, so they never overwrite this newer value."""
    await platform.redis.set(_user_key(user_id), f"{epoch}:{status}", ex=_USER_CACHE_SECS)


async def check_not_revoked(platform: Platform, claims: AccessClaims) -> None:
    revoked, cached = await platform.redis.mget(_revoked_key(claims.session_id), _user_key(claims.user_id))
    if revoked is not None or not _still_valid(claims, await _user_state(platform, claims.user_id, cached)):
        raise TokenInvalid("token_revoked")


async def revoked_among(platform: Platform, claims: Sequence[AccessClaims]) -> list[bool]:
    """`check_not_revoked` for many tokens in one round trip (the websocket gateway re-checks
    every open socket every second): which of them are no longer valid."""
    if not claims:
        return []
    sessions = list({c.session_id for c in claims})
    users = list({c.user_id for c in claims})
    keys = [_revoked_key(s) for s in sessions] + [_user_key(u) for u in users]
    async with platform.redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(keys), _MGET_CHUNK):
            pipe.mget(keys[start:start + _MGET_CHUNK])
        values = [value for chunk in await pipe.execute() for value in chunk]
    revoked = {s for s, value in zip(sessions, values, strict=False) if value is not None}
    states = {u: await _user_state(platform, u, cached)
              for u, cached in zip(users, values[len(sessions):], strict=True)}
    return [c.session_id in revoked or not _still_valid(c, states[c.user_id]) for c in claims]


async def _user_state(platform: Platform, user_id: uuid.UUID, cached: bytes | str | None) -> tuple[int, str] | None:
    """(auth epoch, status) from the cache, or from Postgres on a miss (then cached)."""
    if cached is None:
        state = await get_auth_state(platform.db, user_id)
        if state is None:
            return None
        status, epoch = state
        await platform.redis.set(_user_key(user_id), f"{epoch}:{status}", ex=_USER_CACHE_SECS, nx=True)
        return epoch, status
    epoch_text, status = (cached.decode() if isinstance(cached, bytes) else cached).split(":", 1)
    return int(epoch_text), status


def _still_valid(claims: AccessClaims, state: tuple[int, str] | None) -> bool:
    return state is not None and state[1] == "active" and claims.auth_epoch >= state[0]

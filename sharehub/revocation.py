"""Making access tokens stop working before they expire, across every gateway process.

Access tokens are checked without a database hit. Two Redis facts make them revocable at once:
- `auth:revoked:<session id>`: set on logout or family revocation, for as long as an access token
  of that session could still be valid;
- `auth:user:<user id>` = "<auth_epoch>:<status>": a cache of the user's row. A token issued under an
  older epoch (before a role change, ban or password change) is refused. A miss reloads from
  Postgres, so losing Redis data never resurrects a token."""

from __future__ import annotations

import uuid

from sharehub.platform import Platform
from sharehub.security.tokens import AccessClaims, TokenInvalid
from storage.users import get_auth_state

_USER_CACHE_SECS = 3600


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
    if revoked is not None:
        raise TokenInvalid("token_revoked")
    if cached is None:
        state = await get_auth_state(platform.db, claims.user_id)
        if state is None:
            raise TokenInvalid("token_revoked")
        status, epoch = state
        await platform.redis.set(_user_key(claims.user_id), f"{epoch}:{status}", ex=_USER_CACHE_SECS, nx=True)
    else:
        epoch_text, status = (cached.decode() if isinstance(cached, bytes) else cached).split(":", 1)
        epoch = int(epoch_text)
    if status != "active" or claims.auth_epoch < epoch:
        raise TokenInvalid("token_revoked")

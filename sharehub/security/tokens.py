"""Access and refresh tokens: EdDSA-signed JWTs with `kid`, `iss`, `aud`, `exp` and a token type.

Only `EdDSA` is accepted, whatever the header says (no `none`, no HMAC confusion), the `kid` must be
a key we hold, and the type claim must match the use: a refresh token is not an access token."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

import jwt

from sharehub.security.keys import KeyRing

ALGORITHM = "EdDSA"
_LEEWAY_SECS = 5


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


class TokenInvalid(Exception):
    """A token that must be answered with 401; `code` says why (stable, machine-readable)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    roles: frozenset[str]
    auth_epoch: int
    expires_at: int
    kid: str = ""


@dataclass(frozen=True)
class RefreshClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: uuid.UUID
    expires_at: int


# A client sends the same access token with every call for its 15 minutes, and an Ed25519 check
# through PyJWT costs ~0.4 ms of CPU here: remember tokens already verified (by exact string, so
# a tampered token is always a miss) until they expire or their key is retired. Revocation is
# checked separately on every request.
_VERIFIED_CACHE_SIZE = 10_000


class TokenService:
    def __init__(
        self, keys: KeyRing, *, issuer: str, audience: str, access_ttl_secs: int, refresh_ttl_secs: int
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_secs = access_ttl_secs
        self.refresh_ttl_secs = refresh_ttl_secs
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()

    def _encode(self, claims: dict[str, object], ttl_secs: int) -> tuple[str, int]:
        now = int(time.time())
        key = self.keys.signing_key()
        payload = {"iss": self.issuer, "aud": self.audience, "iat": now, "nbf": now, "exp": now + ttl_secs}
        payload.update(claims)
        token = jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, now + ttl_secs

    def issue_access(
        self, user_id: uuid.UUID, session_id: uuid.UUID, roles: frozenset[str], auth_epoch: int
    ) -> tuple[str, int]:
        return self._encode(
            {
                "typ": TokenType.ACCESS.value,
                "sub": str(user_id),
                "sid": str(session_id),
                "jti": str(uuid.uuid4()),
                "roles": sorted(roles),
                "ae": auth_epoch,
            },
            self.access_ttl_secs,
        )

    def issue_refresh(self, user_id: uuid.UUID, session_id: uuid.UUID, jti: uuid.UUID) -> tuple[str, int]:
        return self._encode(
            {"typ": TokenType.REFRESH.value, "sub": str(user_id), "sid": str(session_id), "jti": str(jti)},
            self.refresh_ttl_secs,
        )

    def _decode(self, token: str, expected: TokenType) -> dict[str, object]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenInvalid("token_malformed") from exc
        if header.get("alg") != ALGORITHM:
            raise TokenInvalid("token_algorithm_not_allowed")
        kid = header.get("kid")
        key = self.keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenInvalid("token_unknown_key")
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=_LEEWAY_SECS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid", "jti", "typ"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenInvalid("token_expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenInvalid("token_invalid") from exc
        if claims.get("typ") != expected.value:
            raise TokenInvalid("token_wrong_type")
        claims["_kid"] = key.kid
        return claims

    def verify_access(self, token: str) -> AccessClaims:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at + _LEEWAY_SECS >= time.time() and self.keys.verification_key(cached.kid):
                self._verified.move_to_end(token)
                return cached
            del self._verified[token]
        verified = self._verify_access(token)
        self._verified[token] = verified
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    def _verify_access(self, token: str) -> AccessClaims:
        claims = self._decode(token, TokenType.ACCESS)
        try:
            roles = claims["roles"]
            epoch = claims["ae"]
            if not isinstance(roles, list) or not isinstance(epoch, int):
                raise TypeError
            return AccessClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                session_id=uuid.UUID(str(claims["sid"])),
                roles=frozenset(str(r) for r in roles),
                auth_epoch=epoch,
                expires_at=int(str(claims["exp"])),
                kid=str(claims["_kid"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid("token_invalid") from exc

    def verify_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, TokenType.REFRESH)
        try:
            return RefreshClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                session_id=uuid.UUID(str(claims["sid"])),
                jti=uuid.UUID(str(claims["jti"])),
                expires_at=int(str(claims["exp"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid("token_invalid") from exc

"""JWT rules: EdDSA only, known kid, iss/aud/exp/type checked; keys rotate without a restart."""

from __future__ import annotations

import base64
import datetime
import time
import uuid
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sharehub.security.keys import KeyRing, generate_key
from sharehub.security.tokens import TokenInvalid, TokenService

USER, SESSION = uuid.uuid4(), uuid.uuid4()


def _service(keys_dir: Path, *, delay: float = 0, access_ttl: int = 900) -> TokenService:
    ring = KeyRing(keys_dir, publish_delay_secs=delay, rescan_secs=0)
    return TokenService(ring, issuer="https://sharehub.ru", audience="sharehub-api",
                        access_ttl_secs=access_ttl, refresh_ttl_secs=3600)


@pytest.fixture
def service(tmp_path: Path) -> TokenService:
    generate_key(tmp_path)
    return _service(tmp_path)


def _code(service: TokenService, token: str) -> str:
    with pytest.raises(TokenInvalid) as caught:
        service.verify_access(token)
    return caught.value.code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip(service: TokenService) -> None:
    token, _ = service.issue_access(USER, SESSION, frozenset({"user", "owner"}), 3)
    claims = service.verify_access(token)
    assert (claims.user_id, claims.session_id, claims.roles, claims.auth_epoch) == (
        USER, SESSION, frozenset({"user", "owner"}), 3)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"]


def test_alg_none_is_refused(service: TokenService) -> None:
    good, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    payload = good.split(".")[1]
    kid = jwt.get_unverified_header(good)["kid"]
    unsigned = _b64(orjson.dumps({"alg": "none", "kid": kid, "typ": "JWT"})) + "." + payload + "."
    assert _code(service, unsigned) == "token_algorithm_not_allowed"


def test_hmac_with_the_public_key_is_refused(service: TokenService) -> None:
    good, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    forged = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": kid})
    assert _code(service, forged) == "token_algorithm_not_allowed"


def test_a_token_signed_by_another_key_is_refused(service: TokenService) -> None:
    good, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})
    assert _code(service, forged) == "token_invalid"
    unknown = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "nope"})
    assert _code(service, unknown) == "token_unknown_key"


def test_tampered_payload_is_refused(service: TokenService) -> None:
    good, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    header, payload, signature = good.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin", "user"]
    assert _code(service, f"{header}.{_b64(orjson.dumps(claims))}.{signature}") == "token_invalid"


def test_expired_wrong_audience_and_wrong_issuer(tmp_path: Path) -> None:
    generate_key(tmp_path)
    expired_service = _service(tmp_path, access_ttl=-60)
    expired, _ = expired_service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    assert _code(_service(tmp_path), expired) == "token_expired"
    other = _service(tmp_path)
    other.audience = "another-api"
    token, _ = other.issue_access(USER, SESSION, frozenset({"user"}), 0)
    assert _code(_service(tmp_path), token) == "token_invalid"
    other = _service(tmp_path)
    other.issuer = "https://evil.example"
    token, _ = other.issue_access(USER, SESSION, frozenset({"user"}), 0)
    assert _code(_service(tmp_path), token) == "token_invalid"


def test_refresh_and_access_are_not_interchangeable(service: TokenService) -> None:
    refresh, _ = service.issue_refresh(USER, SESSION, uuid.uuid4())
    assert _code(service, refresh) == "token_wrong_type"
    access, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    with pytest.raises(TokenInvalid, match="token_wrong_type"):
        service.verify_refresh(access)


def test_garbage_is_malformed(service: TokenService) -> None:
    for junk in ("", "abc", "a.b.c", "....", "é.é.é"):
        assert _code(service, junk) in {"token_malformed", "token_invalid"}


def test_rotation_without_restart(tmp_path: Path) -> None:
    first_kid = generate_key(tmp_path, now=time.time() - 3600)
    service = _service(tmp_path, delay=60)
    old_token, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    assert jwt.get_unverified_header(old_token)["kid"] == first_kid
    new_kid = generate_key(tmp_path)
    # The new key verifies at once but is not used for signing until every process has it...
    assert service.keys.verification_key(new_kid) is not None
    token, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    assert jwt.get_unverified_header(token)["kid"] == first_kid
    # ...after the publish delay it signs, and tokens from the old key still verify.
    service.keys.publish_delay_secs = 0
    token, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert service.verify_access(old_token).user_id == USER
    # Retiring the old key file retires its tokens.
    (tmp_path / f"{first_kid}.pem").unlink()
    assert _code(service, old_token) == "token_unknown_key"
    assert {k["kid"] for k in service.keys.jwks()["keys"]} == {new_kid}


def test_the_verified_cache_never_accepts_what_verification_would_refuse(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, _ = service.issue_access(USER, SESSION, frozenset({"user"}), 0)
    assert service.verify_access(good).user_id == USER  # now cached
    header, payload, signature = good.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin", "user"]
    assert _code(service, f"{header}.{_b64(orjson.dumps(claims))}.{signature}") == "token_invalid"
    # Move both clocks (ours and PyJWT's) past the expiry: a cached token expires like any other.
    later = time.time() + service.access_ttl_secs + 60

    class _Later(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return datetime.datetime.fromtimestamp(later, tz)

    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _Later)
    assert _code(service, good) == "token_expired"

"""JWT signing keys: Ed25519 PEM files in one directory (a Kubernetes Secret mounted as files in
production, `.sharehub/keys` locally).

Rotation needs no restart: `sharehub keys rotate` adds a file; every process rescans the directory
and verifies with every key in it at once, but *signs* with a new key only after
`publish_delay_secs`, so no gateway hands out tokens that another gateway cannot yet verify.
Removing an old file (after its tokens have expired) retires it."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_KID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    created_at: float
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "use": "sig", "x": x}


def _created_at(kid: str) -> float:
    return datetime.strptime(kid.split("-", 1)[0], _KID_TIME_FORMAT).replace(tzinfo=UTC).timestamp()


def generate_key(directory: Path, *, now: float | None = None) -> str:
    """Write a new key file; returns its kid. Written aside then renamed, so a rescan never sees half."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), UTC).strftime(_KID_TIME_FORMAT)
    kid = f"{stamp}-{secrets.token_hex(3)}"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = directory / f".{kid}.tmp"
    tmp.write_bytes(pem)
    tmp.chmod(0o600)
    os.replace(tmp, directory / f"{kid}.pem")
    return kid


class KeyRing:
    """The keys in a directory, reloaded when it changes (checked at most every `rescan_secs`)."""

    def __init__(self, directory: Path, *, publish_delay_secs: float, rescan_secs: float) -> None:
        self.directory = directory
        self.publish_delay_secs = publish_delay_secs
        self.rescan_secs = rescan_secs
        self._keys: dict[str, SigningKey] = {}
        self._fingerprint: tuple[tuple[str, float], ...] = ()
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self.reload()

    def _scan(self) -> tuple[tuple[str, float], ...]:
        if not self.directory.exists():
            return ()
        return tuple(sorted((p.name, p.stat().st_mtime) for p in self.directory.glob("*.pem")))

    def reload(self) -> None:
        with self._lock:
            fingerprint = self._scan()
            self._checked_at = time.monotonic()
            if fingerprint == self._fingerprint:
                return
            keys = {}
            for name, _ in fingerprint:
                kid = name.removesuffix(".pem")
                loaded = serialization.load_pem_private_key((self.directory / name).read_bytes(), None)
                if not isinstance(loaded, Ed25519PrivateKey):
                    raise ValueError(f"{name}: only Ed25519 signing keys are allowed")
                keys[kid] = SigningKey(kid, _created_at(kid), loaded)
            self._keys, self._fingerprint = keys, fingerprint

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked_at >= self.rescan_secs:
            self.reload()

    def signing_key(self) -> SigningKey:
        self._maybe_reload()
        if not self._keys:
            raise RuntimeError(f"no signing keys in {self.directory}: run `sharehub keys rotate`")
        ordered = sorted(self._keys.values(), key=lambda k: k.created_at)
        published = [k for k in ordered if k.created_at <= time.time() - self.publish_delay_secs]
        # The very first key has nothing to wait for: no other process holds an older one.
        return published[-1] if published else ordered[0]

    def verification_key(self, kid: str) -> SigningKey | None:
        self._maybe_reload()
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._checked_at >= 1.0:
            self.reload()  # a key another process just added; bounded to once a second
            key = self._keys.get(kid)
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        self._maybe_reload()
        return {"keys": [key.jwk() for key in self._keys.values()]}


def ensure_key(directory: Path) -> None:
    """First start: make the first key so a fresh install can sign tokens."""
    if not directory.exists() or not any(directory.glob("*.pem")):
        generate_key(directory)

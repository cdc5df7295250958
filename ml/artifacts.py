"""The model store: artifacts by content, on disk (SHAREHUB_MODEL_DIR, by default the data
directory's models/). Postgres (storage/ml_models.py) names each version's artifact by URI and
SHA-256, and a load checks the digest, so a truncated or swapped file is refused rather than
served. On a cluster the directory is a volume every node mounts (deploy/helm: the models PVC)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse


class ArtifactError(Exception):
    pass


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    sha256: str
    size: int


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, kind: str, data: bytes) -> StoredArtifact:
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / kind / f"{digest}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written beside, then renamed: a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        return StoredArtifact(uri=path.resolve().as_uri(), sha256=digest, size=len(data))

    @staticmethod
    def get(uri: str, sha256: str) -> bytes:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ArtifactError(f"unsupported artifact URI {uri!r}")
        try:
            data = Path(unquote(parsed.path)).read_bytes()
        except OSError as exc:
            raise ArtifactError(f"artifact {uri} unreadable: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ArtifactError(f"artifact {uri} does not match its digest")
        return data

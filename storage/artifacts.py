"""Content-addressed artifact store: files named by their sha256, written atomically, verified on read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from storage.errors import ArtifactCorrupt, ArtifactMissing


class ArtifactStore:
    """Immutable blobs under ``root/ab/abcdef…``; the same bytes are stored once."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob with this sha256 lives (whether or not it exists)."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ArtifactMissing(f"{digest!r} is not a sha256 hex digest")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store bytes and return their sha256; a blob already stored is not written again."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists() and file_sha256(target) == digest:
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync(target.parent)
        return digest

    def get(self, digest: str) -> bytes:
        """Read a blob, refusing it if its bytes no longer hash to its name."""
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(
                f"artifact {digest[:12]}… is missing from {self.root}; restore the data "
                "directory from a backup or retrain the model"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ArtifactCorrupt(
                f"artifact {digest[:12]}… is corrupt or truncated (its bytes hash to "
                f"{actual[:12]}…); it was not loaded — restore it from a backup or retrain"
            )
        return data

    def exists(self, digest: str) -> bool:
        """Whether a blob with this hash is stored (not verified)."""
        return self.path(digest).exists()


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries (after a rename into it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

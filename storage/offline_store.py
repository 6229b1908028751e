"""Offline store: immutable Parquet files named by the sha256 of their bytes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from storage.artifacts import file_sha256


class OfflineStore:
    """Parquet snapshots under ``root/<namespace>/<sha256>.parquet``; equal content is stored once."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def write(self, namespace: str, frame: pl.DataFrame, metadata: dict[str, str] | None = None) -> tuple[str, Path]:
        """Write a frame as Parquet, with ``metadata`` as the file's key-value metadata (part of its content,
        so of its hash), and return (sha256, path); identical content reuses the file."""
        folder = self.root / namespace
        with parquet_being_written(folder) as tmp:
            frame.write_parquet(tmp, compression="zstd", statistics=True, metadata=metadata)
            digest = file_sha256(tmp)
            target = folder / f"{digest}.parquet"
            if not target.exists():
                move_into_place(tmp, target)
        return digest, target

    def metadata(self, relative: str) -> dict[str, str]:
        """The key-value metadata of a file in the store (``relative`` to its root) as ``write`` gave it."""
        return pl.read_parquet_metadata(self.root / relative)

    def path(self, namespace: str, digest: str) -> Path:
        """Where a snapshot with this hash lives."""
        return self.root / namespace / f"{digest}.parquet"


@contextmanager
def parquet_being_written(folder: Path) -> Iterator[Path]:
    """A temporary file in ``folder`` to write a Parquet file into; gone when the block ends unless
    ``move_into_place`` took it, so a failed or unneeded write leaves nothing half-written behind. It is made
    in the target's own folder: a rename across file systems would not be atomic."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def move_into_place(tmp: Path, target: Path) -> None:
    """The written file on disk first, then under its name: a reader, or a restart after a power cut, finds
    the whole file or none."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)

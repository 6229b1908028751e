"""Offline store: immutable Parquet files named by the sha256 of their bytes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from storage.artifacts import file_sha256


class OfflineStore:
    """Parquet snapshots under ``root/<namespace>/<sha256>.parquet``; equal content is stored once."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def write(self, namespace: str, frame: pl.DataFrame) -> tuple[str, Path]:
        """Write a frame as Parquet and return (sha256, path); identical content reuses the file."""
        folder = self.root / namespace
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            frame.write_parquet(tmp, compression="zstd", statistics=True)
            digest = file_sha256(Path(tmp))
            target = folder / f"{digest}.parquet"
            if target.exists():
                Path(tmp).unlink()
            else:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest, target

    def path(self, namespace: str, digest: str) -> Path:
        """Where a snapshot with this hash lives."""
        return self.root / namespace / f"{digest}.parquet"


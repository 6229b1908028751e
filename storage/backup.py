"""Consistent copies of a live data directory: SQLite's online backup for databases, verified file copies."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from storage.artifacts import file_sha256


def backup_database(source: Path, target: Path) -> None:
    """Copy a SQLite database while others read and write it; the copy is one consistent state."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst, pages=4096)  # in steps, so writers are never blocked for long
            dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(tmp, target)


def copy_verified(source: Path, target: Path) -> str:
    """Copy a file and return its sha256, checking the copy reads back the same."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    digest = file_sha256(tmp)
    if digest != file_sha256(source):
        tmp.unlink()
        raise OSError(f"{source} changed while it was copied")
    os.replace(tmp, target)
    return digest

"""Disk use of the data directory, per part: metadata.db, artifacts/, offline/, archive/, other databases."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec

from appliance.layout import DATABASE_SUFFIX, FILE_TREES

# A SQLite database is its file plus the write-ahead log and shared-memory index beside it.
_SQLITE_SIDES = ("-wal", "-shm", "-journal")


class DiskPart(msgspec.Struct, frozen=True):
    name: str  # "metadata.db", "artifacts/", "offline/", "archive/", "<name>.db", or "other"
    bytes: int


class DiskUse(msgspec.Struct, frozen=True):
    root: str
    total_bytes: int  # everything under the data directory (apparent sizes, links not followed)
    parts: list[DiskPart]  # largest first; they add up to total_bytes
    filesystem_free_bytes: int  # left on the filesystem that holds the data directory
    filesystem_total_bytes: int


def disk_use(root: Path) -> DiskUse:
    """Bytes under the data directory by part, and what is left on its filesystem."""
    root = Path(root)
    sizes: dict[str, int] = {}
    with os.scandir(root) as entries:
        for entry in entries:
            part = _part(entry)
            sizes[part] = sizes.get(part, 0) + _bytes(entry)
    parts = sorted((DiskPart(name, size) for name, size in sizes.items()), key=lambda p: (-p.bytes, p.name))
    filesystem = shutil.disk_usage(root)
    return DiskUse(str(root), sum(sizes.values()), parts, filesystem.free, filesystem.total)


def _part(entry: os.DirEntry) -> str:
    if entry.name in FILE_TREES and entry.is_dir(follow_symlinks=False):
        return entry.name + "/"
    for side in _SQLITE_SIDES:
        if entry.name.endswith(DATABASE_SUFFIX + side):
            return entry.name[: -len(side)]
    return entry.name if entry.name.endswith(DATABASE_SUFFIX) else "other"


def _bytes(entry: os.DirEntry) -> int:
    if not entry.is_dir(follow_symlinks=False):
        return _size(entry.path)
    return sum(
        _size(os.path.join(folder, name))
        for folder, _, files in os.walk(entry.path)  # os.walk does not follow links into folders
        for name in files
    )


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:  # removed while we counted: a temporary file, a checkpointed WAL
        return 0

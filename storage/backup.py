"""Consistent copies of a live data directory: SQLite's online backup for databases, verified file copies,
and folders that appear whole or not at all."""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.artifacts import file_sha256, fsync
from storage.database import damaged, is_damage

_PARTIAL = ".partial-"  # a folder being filled: `.<final name>.partial-<random>`, beside its final place


def backup_database(source: Path, target: Path) -> None:
    """Copy a SQLite database while others read and write it: the copy is the database at one instant.

    One step, in one read transaction over the whole file. Copied in steps, every commit by another
    connection restarts the copy, so a log written faster than a step is copied never finishes
    (scripts/bench/backup_load.py); in WAL mode the one read transaction blocks no writer. The copy
    is checked page by page, so a backup never carries damage it could have seen.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
            problems = [" ".join(str(row[0]).split()) for row in dst.execute("PRAGMA quick_check(3)")]
        finally:
            dst.close()
    except sqlite3.DatabaseError as e:
        if is_damage(e):
            raise damaged(source, e) from None
        raise
    finally:
        src.close()
    if problems != ["ok"]:
        raise damaged(source, "; ".join(problems))
    fsync(target)


def copy_verified(source: Path, target: Path) -> str:
    """Copy a file and return its sha256, checking the copy reads back the same.

    The source is read through one open descriptor, so a file replaced by a rename meanwhile (the
    stores write that way) is copied whole as it was when opened."""
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with source.open("rb") as src, target.open("wb") as dst:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            h.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    digest = h.hexdigest()
    if file_sha256(target) != digest:
        target.unlink()
        raise OSError(errno.EIO, f"the copy of {source} at {target} does not read back as written")
    return digest


def write_file(target: Path, data: bytes) -> Path:
    """Write a file and flush it to disk (what a backup writes rather than copies: its manifest, a spec)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return target


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A new folder beside ``final`` to fill; renamed to ``final`` when the block ends, removed if it raises.

    Until then ``final`` is untouched, so a copy that is killed or times out leaves no half of itself
    where the next one goes. The stage holds a file lock the kernel drops when its process dies: the
    next stage for the same place removes the stages no living process holds. FileExistsError: ``final``
    was filled by someone else meanwhile (the stage is removed).
    """
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        # a file where a folder goes; callers read FileExistsError as `final` filled meanwhile
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(final.parent)) from None
    _remove_abandoned(final)
    # Locked under a name no sweep looks at, then renamed into the swept pattern: a sweep never sees
    # a stage before its lock is held.
    token = secrets.token_hex(6)
    fresh = final.with_name(f".{final.name}.new-{token}")
    fresh.mkdir()  # as any folder is made (the umask decides who may read it), not private like mkdtemp's
    fd = os.open(fresh, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        stage = final.with_name(f".{final.name}{_PARTIAL}{token}")
        fresh.rename(stage)
        try:
            yield stage
            try:
                stage.rename(final)  # replaces an empty folder; refuses a filled one
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise FileExistsError(errno.EEXIST, f"{final} was filled meanwhile") from None
                raise
            fsync(final.parent)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    finally:
        os.close(fd)


def _remove_abandoned(final: Path) -> None:
    for stage in final.parent.glob(f".{glob.escape(final.name)}{_PARTIAL}*"):
        try:
            fd = os.open(stage, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # another living process is filling it
        else:
            shutil.rmtree(stage, ignore_errors=True)
        finally:
            os.close(fd)

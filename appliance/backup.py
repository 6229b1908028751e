"""Backup and restore of a whole data directory, safe while the appliance serves."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import msgspec

import appliance
from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.layout import FILE_TREES, Layout
from storage.artifacts import file_sha256
from storage.backup import backup_database, copy_verified

MANIFEST = "manifest.json"


class BackupFile(msgspec.Struct, frozen=True):
    path: str
    sha256: str
    bytes: int


class BackupManifest(msgspec.Struct, frozen=True):
    created_at: float
    appliance_version: str
    source: str
    schema_versions: dict[str, int]
    files: list[BackupFile]


def backup(home: Path, dest: Path) -> BackupManifest:
    """Copy every database (SQLite online backup) and every stored file into ``dest``, with a manifest."""
    home, dest = Path(home).resolve(), Path(dest).resolve()
    layout = Layout(home)
    if not layout.exists():
        raise NotFound(f"{home} is not an appliance data directory (no {layout.metadata_db.name}); pass --home")
    if dest.exists() and any(dest.iterdir()):
        raise Conflict(f"backup destination {dest} is not empty; choose a new folder")
    if dest == home or home in dest.parents:
        raise InvalidInput(f"backup destination {dest} is inside the data directory; choose a folder outside it")
    files, versions = [], {}
    for db in layout.databases():
        backup_database(db, dest / db.name)
        versions[db.name] = _schema_version(dest / db.name)
        files.append(_entry(dest, dest / db.name))
    # The file trees after the databases, so everything the databases reference is already on disk.
    for tree in FILE_TREES:
        for source in sorted((home / tree).rglob("*")):
            if source.is_file() and not source.name.startswith(".tmp-"):
                target = dest / source.relative_to(home)
                digest = copy_verified(source, target)
                files.append(BackupFile(str(target.relative_to(dest)), digest, target.stat().st_size))
    manifest = BackupManifest(time.time(), appliance.__version__, str(home), versions, files)
    (dest / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
    return manifest


def restore(src: Path, home: Path, force: bool = False) -> BackupManifest:
    """Verify a backup against its manifest, then make it the data directory (the old one is kept aside)."""
    src, home = Path(src).resolve(), Path(home).resolve()
    manifest = read_manifest(src)
    for f in manifest.files:
        path = src / f.path
        if not path.is_file() or file_sha256(path) != f.sha256:
            raise InvalidInput(f"backup {src} is damaged: {f.path} is missing or does not match its "
                               "manifest; nothing was restored — use another backup")
    if home.exists() and any(home.iterdir()):
        if not force:
            raise Conflict(f"{home} is not empty; stop the appliance and pass --force to restore over it "
                           "(the current data directory is kept as a sibling folder)")
        aside = home.with_name(f"{home.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
        home.rename(aside)
    staging = home.with_name(home.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    for f in manifest.files:
        copy_verified(src / f.path, staging / f.path)
    staging.rename(home)
    return manifest


def read_manifest(src: Path) -> BackupManifest:
    """The manifest of a backup folder; a folder without one is not a backup."""
    try:
        return msgspec.json.decode((Path(src) / MANIFEST).read_bytes(), type=BackupManifest)
    except FileNotFoundError:
        raise NotFound(f"{src} holds no {MANIFEST}; it is not an appliance backup") from None
    except msgspec.DecodeError as e:
        raise InvalidInput(f"{src}/{MANIFEST} is damaged ({e}); use another backup") from None


def _entry(root: Path, path: Path) -> BackupFile:
    return BackupFile(str(path.relative_to(root)), file_sha256(path), path.stat().st_size)


def _schema_version(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return row[0] or 0
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()

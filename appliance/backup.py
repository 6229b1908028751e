"""Backup and restore of a whole data directory, safe while the appliance serves.

A backup is self-contained: besides the databases and the stored files it holds ``appliance.toml`` and,
for each registered model, its spec with the contract and data files the spec names, so a restore on a
clean host serves, monitors, replays and retrains. It appears at its destination whole or not at all. A
restore trusts nothing it reads: every path must stay inside the target and every file must match its
manifest before anything is written, and it is built beside the target and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import msgspec

import appliance
from appliance.data.sources import READABLE
from appliance.errors import ApplianceError, Conflict, InvalidInput, NotFound
from appliance.home import Home
from appliance.layout import FILE_TREES, METADATA_DB, SPECS, Layout
from appliance.registry import Registry
from appliance.spec import load_spec
from appliance.toml_file import parse_toml
from storage.artifacts import file_sha256
from storage.backup import backup_database, copy_verified, staged_folder, write_file

MANIFEST = "manifest.json"
# In a backup and in a data directory restored from one: a folder per model holding its spec and the files
# the spec names, laid out as they were around the spec, so its relative paths still hold.
DATA_FILES = ("source", "contract", "entities", "live")  # the keys of a spec's [data] that name files


class BackupFile(msgspec.Struct, frozen=True):
    path: str  # relative to the backup (and to the restored data directory), '/'-separated
    sha256: str
    bytes: int


class BackupManifest(msgspec.Struct, frozen=True):
    created_at: float
    appliance_version: str
    source: str  # the data directory backed up
    schema_versions: dict[str, int]
    files: list[BackupFile]
    specs: dict[str, str] = {}  # model: its spec's path in the backup; a restore registers that copy
    notes: list[str] = []  # what the backup could not include, and what a restore then lacks


def backup(home: Path, dest: Path) -> BackupManifest:
    """Copy every database (each at one instant, while others write), every stored file, the settings and
    each model's spec with its data files into ``dest``, with a manifest; ``dest`` appears only when whole."""
    home, dest = Path(home).resolve(), Path(dest).resolve()
    layout = Layout(home)
    if not layout.exists():
        raise NotFound(f"{home} is not an appliance data directory (no {layout.metadata_db.name}); pass --home")
    if dest.exists() and not dest.is_dir():
        raise Conflict(f"backup destination {dest} is a file; choose a new folder")
    if dest.exists() and any(dest.iterdir()):
        raise Conflict(f"backup destination {dest} is not empty; choose a new folder")
    if dest == home or home in dest.parents:
        raise InvalidInput(f"backup destination {dest} is inside the data directory; choose a folder outside it")
    with _whole_or_nothing(dest, "the backup to", "choose a new folder") as stage:
        manifest = _fill(layout, stage)
        write_file(stage / MANIFEST, msgspec.json.format(msgspec.json.encode(manifest)))
    return manifest


@contextlib.contextmanager
def _whole_or_nothing(target: Path, doing: str, when_filled: str) -> Iterator[Path]:
    """A stage that becomes ``target`` only when whole (``staged_folder``); a copy that fails leaves nothing
    there and says so: ``doing`` names the copy ("the backup to"), ``when_filled`` what to do when someone
    else filled ``target`` meanwhile."""
    try:
        with staged_folder(target) as stage:
            yield stage
    except FileExistsError:
        raise Conflict(
            f"{target} was filled by someone else meanwhile; nothing was written there — {when_filled}"
        ) from None
    except OSError as e:
        raise InvalidInput(
            f"{doing} {target} stopped ({e}); nothing was kept there — fix what the error names (space, "
            "permissions) and run it again"
        ) from None


def _fill(layout: Layout, stage: Path) -> BackupManifest:
    """Copy everything a backup holds into ``stage``; the manifest that lists it."""
    home = layout.root
    files, versions = [], {}
    for db in layout.databases():
        backup_database(db, stage / db.name)
        versions[db.name] = _schema_version(stage / db.name)
        files.append(_entry(stage, stage / db.name))
    # The file trees after the databases, so everything the databases reference is already on disk.
    for tree in FILE_TREES:
        for source in sorted((home / tree).rglob("*")):
            if source.is_file() and not source.name.startswith(".tmp-"):
                target = stage / source.relative_to(home)
                try:
                    digest = copy_verified(source, target)
                except FileNotFoundError:
                    continue  # deleted since it was listed (retention drops archived days): not in this state
                files.append(BackupFile(target.relative_to(stage).as_posix(), digest, target.stat().st_size))
    if layout.settings.is_file():
        target = stage / layout.settings.name
        files.append(BackupFile(target.name, copy_verified(layout.settings, target), target.stat().st_size))
    specs, notes = {}, []
    for name, spec_path in _registered_specs(Layout(stage).metadata_db).items():
        copied = _copy_spec(name, Path(spec_path), stage / SPECS / _model_folder(name))
        notes += copied.notes
        files += [_entry(stage, path) for path in copied.written]
        if copied.spec is not None:
            specs[name] = copied.spec.relative_to(stage).as_posix()
    return BackupManifest(time.time(), appliance.__version__, str(home), versions, files, specs, notes)


@dataclass
class _SpecCopy:
    spec: Path | None = None  # the spec's copy, None when there was none to copy
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _copy_spec(model: str, registered: Path, folder: Path) -> _SpecCopy:
    """Copy a model's spec and the files its [data] table names into ``folder``, laid out as they are
    around the spec (relative to the deepest folder holding them all), so the spec's relative paths hold
    in the copy; an absolute path is rewritten in the copy to the file's place beside it."""
    copy = _SpecCopy()
    try:
        spec = load_spec(registered)
    except ApplianceError as e:
        if not registered.is_file():
            copy.notes.append(
                f"model '{model}': its spec {registered} is missing, so this backup holds none; "
                "after a restore, register it again with `appliance init --spec SPEC`"
            )
            return copy
        copy.notes.append(
            f"model '{model}': its spec {registered} does not load ({e}); it is copied alone, "
            "without the files it names"
        )
        copy.spec = folder / registered.name
        copy.written.append(write_file(copy.spec, registered.read_bytes()))
        return copy
    assert spec.path is not None  # load_spec records it
    named = {key: value for key in DATA_FILES if (value := getattr(spec.data, key))}
    # Laid out by the paths as written (a symlinked data file keeps its name); read from where they lead.
    places = {key: Path(os.path.normpath(spec.path.parent / value)) for key, value in named.items()}
    root = Path(os.path.commonpath([spec.path.parent, *places.values()]))
    text = spec.path.read_text(encoding="utf-8")
    for key, value in named.items():
        if Path(value).is_absolute():
            relative = os.path.relpath(places[key], spec.path.parent)
            rewritten = _rewritten(text, key, value, relative)
            if rewritten is None:
                copy.notes.append(
                    f"model '{model}': data.{key} = {value!r} could not be rewritten in the copy of "
                    f"its spec; after a restore, set it to {relative!r}"
                )
            text = rewritten or text
    copy.spec = folder / spec.path.relative_to(root)
    copy.written.append(write_file(copy.spec, text.encode("utf-8")))
    for key, value in named.items():
        source = spec.resolve(value)
        if source.is_dir():
            members = [p for p in sorted(source.iterdir()) if p.is_file() and p.suffix.lower() in READABLE]
            pairs = [(p, folder / places[key].relative_to(root) / p.name) for p in members]
        elif source.is_file():
            pairs = [(source, folder / places[key].relative_to(root))]
        else:
            copy.notes.append(f"model '{model}': data.{key} {source} is missing, so this backup holds none")
            continue
        for source_file, target in pairs:
            if not target.exists():  # two keys may name one file
                copy_verified(source_file, target)
                copy.written.append(target)
    return copy


def _rewritten(text: str, key: str, value: str, new: str) -> str | None:
    """A spec's text with the string ``value`` of [data] ``key`` made ``new`` and nothing else changed;
    None when no spelling of ``value`` in the text reads back so."""
    expected = parse_toml(text)
    if expected is None:
        return None
    expected["data"][key] = new
    for spelled in dict.fromkeys((json.dumps(value, ensure_ascii=False), f"'{value}'")):
        at = text.find(spelled)
        while at >= 0:
            candidate = text[:at] + json.dumps(new, ensure_ascii=False) + text[at + len(spelled) :]
            if parse_toml(candidate) == expected:
                return candidate
            at = text.find(spelled, at + 1)
    return None


def _model_folder(model: str) -> str:
    """The folder of a model's spec in a backup: its name when that is a plain file name."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", model):
        return model
    return "model-" + hashlib.sha256(model.encode()).hexdigest()[:16]


def _registered_specs(metadata_db: Path) -> dict[str, str]:
    """Each registered model's spec path, as the backed-up registry has it."""
    conn = sqlite3.connect(f"file:{metadata_db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return {m.name: m.spec_path for m in Registry(conn).models()}
    finally:
        conn.close()


def restore(src: Path, home: Path, force: bool = False) -> BackupManifest:
    """Check a backup's every path and file against its manifest, then make it the data directory (an old
    one is kept aside) with its models' specs registered where they now are; nothing is written before."""
    src, home = Path(src).resolve(), Path(home).resolve()
    manifest = read_manifest(src)
    _check_paths(src, manifest)
    if home.exists() and (not home.is_dir() or any(home.iterdir())) and not force:
        raise Conflict(
            f"{home} is not empty; stop the appliance and pass --force to restore over it "
            "(the current data directory is kept as a sibling folder)"
        )
    for f in manifest.files:
        path = src / f.path
        if not path.is_file() or path.stat().st_size != f.bytes or file_sha256(path) != f.sha256:
            raise InvalidInput(
                f"backup {src} is damaged: {f.path} is missing or does not match its "
                "manifest; nothing was restored — use another backup"
            )
    with _whole_or_nothing(home, "the restore into", "stop what writes there and try again") as stage:
        for f in manifest.files:
            if copy_verified(src / f.path, stage / f.path) != f.sha256:
                raise InvalidInput(
                    f"backup {src} changed while it was restored ({f.path}); nothing was "
                    "restored — try again once nothing writes to it"
                )
        if manifest.specs:
            with Home(stage) as restored:
                for model, spec in manifest.specs.items():
                    # The registry points at the spec a model was added with: here, the restored copy.
                    restored.registry.add_model(model, str(home / spec), actor="restore")
        if home.exists() and any(home.iterdir()):
            home.rename(home.with_name(f"{home.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}"))
    return manifest


def _check_paths(src: Path, manifest: BackupManifest) -> None:
    """Refuse a manifest naming any path that could lead out of the folder it is copied from or into."""
    listed = [f.path for f in manifest.files]
    for text in [*listed, *manifest.specs.values()]:
        if not _plain(text) or not (src / text).resolve().is_relative_to(src):
            raise InvalidInput(
                f"backup {src} is not safe to restore: its manifest names the path {text!r}, which "
                "is not a plain path inside the backup; nothing was restored — use another backup"
            )
    names = set(listed)
    if len(names) != len(listed) or any(str(parent) in names for p in names for parent in PurePosixPath(p).parents):
        raise InvalidInput(
            f"backup {src} is damaged: its manifest names a file twice, or a file as a folder; "
            "nothing was restored — use another backup"
        )
    missing = sorted({METADATA_DB, *manifest.specs.values()} - names)
    if missing:
        raise InvalidInput(
            f"backup {src} is damaged: its manifest lists no file {missing[0]!r}; nothing was "
            "restored — use another backup"
        )


def _plain(path: str) -> bool:
    """A relative '/'-separated path that names no parent, no root and nothing but its own parts."""
    return (
        bool(path)
        and not PurePosixPath(path).is_absolute()
        and "\\" not in path
        and "\0" not in path
        and all(part not in ("", ".", "..") for part in path.split("/"))
    )


def read_manifest(src: Path) -> BackupManifest:
    """The manifest of a backup folder; a folder without one is not a backup."""
    if not Path(src).exists():
        raise NotFound(f"{src} does not exist; pass the folder `appliance backup` wrote")
    try:
        return msgspec.json.decode((Path(src) / MANIFEST).read_bytes(), type=BackupManifest)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"{src} holds no {MANIFEST}; it is not an appliance backup") from None
    except msgspec.DecodeError as e:
        raise InvalidInput(f"{src}/{MANIFEST} is damaged ({e}); use another backup") from None


def _entry(root: Path, path: Path) -> BackupFile:
    return BackupFile(path.relative_to(root).as_posix(), file_sha256(path), path.stat().st_size)


def _schema_version(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return row[0] or 0
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()

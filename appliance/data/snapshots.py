"""Versioned snapshots: each accepted batch is an immutable, content-hashed Parquet file."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time

import duckdb
import msgspec
import polars as pl

from appliance.errors import InvalidInput, NotFound
from storage.database import transaction
from storage.offline_store import OfflineStore


class Snapshot(msgspec.Struct, frozen=True):
    hash: str
    model: str
    path: str
    rows: int
    quarantined: int
    source: str
    min_event_time: str | None
    max_event_time: str | None
    schema: dict[str, str]
    parent: str | None
    created_at: float


def record_snapshot(conn: sqlite3.Connection, store: OfflineStore, model: str, frame: pl.DataFrame,
                    *, event_time: str, source: str, quarantined: int) -> tuple[Snapshot, bool]:
    """Store accepted rows as a snapshot; returns (snapshot, created) — equal content is not copied."""
    digest, path = store.write(f"{model}/snapshots", frame)
    with transaction(conn):
        existing = conn.execute("SELECT * FROM snapshots WHERE hash = ?", (digest,)).fetchone()
        if existing:
            return _snapshot(existing), False
        parent = conn.execute(
            "SELECT hash FROM snapshots WHERE model = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (model,),
        ).fetchone()
        times = frame[event_time] if frame.height else None
        row = dict(
            hash=digest, model=model, path=str(path.relative_to(store.root)), rows=frame.height,
            quarantined=quarantined, source=source,
            min_event_time=times.min().isoformat() if times is not None else None,
            max_event_time=times.max().isoformat() if times is not None else None,
            schema_json=json.dumps({k: str(v) for k, v in frame.schema.items()}),
            parent=parent[0] if parent else None, created_at=time.time(),
        )
        conn.execute(f"INSERT INTO snapshots ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                     tuple(row.values()))
    return _snapshot(conn.execute("SELECT * FROM snapshots WHERE hash = ?", (digest,)).fetchone()), True


def list_snapshots(conn: sqlite3.Connection, model: str) -> list[Snapshot]:
    """A model's snapshots, oldest first."""
    rows = conn.execute("SELECT * FROM snapshots WHERE model = ? ORDER BY created_at, rowid", (model,))
    return [_snapshot(r) for r in rows]


def read_snapshots(store: OfflineStore, snapshots: list[Snapshot]) -> pl.DataFrame:
    """All rows of the given snapshots as one frame; a row that overlapping batches both hold counts once."""
    if not snapshots:
        raise NotFound("no data snapshot to read; ingest the model's source first")
    frame = pl.concat([pl.read_parquet(store.root / s.path) for s in snapshots], how="vertical_relaxed")
    return frame.unique(keep="first", maintain_order=True) if len(snapshots) > 1 else frame


def data_version(snapshots: list[Snapshot]) -> str:
    """One hash naming exactly this set of snapshots (order-independent)."""
    return hashlib.sha256("\n".join(sorted(s.hash for s in snapshots)).encode()).hexdigest()


def _snapshot(row: sqlite3.Row) -> Snapshot:
    data = dict(row)
    data["schema"] = json.loads(data.pop("schema_json"))
    return Snapshot(**data)


def find_snapshot(conn: sqlite3.Connection, prefix: str) -> Snapshot:
    """The snapshot whose hash starts with ``prefix``; unknown or ambiguous prefixes are errors."""
    rows = conn.execute("SELECT * FROM snapshots WHERE hash LIKE ? || '%' LIMIT 2",
                        (prefix.lower().replace("%", "").replace("_", ""),)).fetchall()
    if not rows or not prefix:
        raise NotFound(f"no snapshot hash starts with '{prefix}'; see `appliance data list MODEL`")
    if len(rows) > 1:
        raise InvalidInput(f"'{prefix}' names more than one snapshot; give more of the hash")
    return _snapshot(rows[0])


def versions_trained_on(conn: sqlite3.Connection, digest: str) -> list[tuple[str, int]]:
    """(model, version) of every registered version whose training run read this snapshot."""
    rows = conn.execute(
        "SELECT v.model, v.version FROM model_versions v JOIN runs r ON r.id = v.run_id, "
        "json_each(r.data_snapshots_json) j WHERE j.value = ? ORDER BY v.model, v.version", (digest,))
    return [(r[0], r[1]) for r in rows]


class SnapshotDiff(msgspec.Struct):
    old: Snapshot
    new: Snapshot
    added_columns: dict[str, str]
    removed_columns: dict[str, str]
    retyped_columns: dict[str, tuple[str, str]]
    only_in_old: int | None     # rows (with multiplicity) in old but not in new; None if the schemas differ
    only_in_new: int | None


def diff_snapshots(store: OfflineStore, old: Snapshot, new: Snapshot) -> SnapshotDiff:
    """What changed between two snapshots: columns, and rows on either side only (DuckDB over Parquet)."""
    a, b = old.schema, new.schema
    only_old = only_new = None
    if a == b:
        con = duckdb.connect(":memory:")
        try:
            pa, pb = (str(store.root / s.path) for s in (old, new))
            only_old = con.execute("SELECT count(*) FROM (SELECT * FROM read_parquet(?) EXCEPT ALL "
                                   "SELECT * FROM read_parquet(?))", [pa, pb]).fetchone()[0]
            only_new = con.execute("SELECT count(*) FROM (SELECT * FROM read_parquet(?) EXCEPT ALL "
                                   "SELECT * FROM read_parquet(?))", [pb, pa]).fetchone()[0]
        finally:
            con.close()
    return SnapshotDiff(
        old, new, added_columns={k: v for k, v in b.items() if k not in a},
        removed_columns={k: v for k, v in a.items() if k not in b},
        retyped_columns={k: (a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k]},
        only_in_old=only_old, only_in_new=only_new)

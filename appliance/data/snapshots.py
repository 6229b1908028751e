"""Versioned snapshots: each accepted batch is an immutable, content-hashed Parquet file.

A snapshot's file names the columns that identify its rows (the contract's unique fields when it was
ingested) in its Parquet metadata, so reading snapshots together depends on their files alone: a run
read again after the contract changed reads the same rows.
"""

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

# The Parquet metadata key whose value (a JSON list) names the columns identifying a snapshot's rows.
IDENTITY_KEY = "appliance.identity"
# The position of a row's snapshot while snapshots are read together, oldest first.
_POSITION = "_snapshot_position"


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


def record_snapshot(
    conn: sqlite3.Connection,
    store: OfflineStore,
    model: str,
    frame: pl.DataFrame,
    *,
    event_time: str,
    source: str,
    quarantined: int,
    identity: list[str] | None = None,
) -> tuple[Snapshot, bool]:
    """Store accepted rows as a snapshot of ``model``, its rows identified by the ``identity`` columns;
    returns (snapshot, created). Equal content is stored once: a model whose batch another model already
    holds gets its own row over the same file."""
    metadata = {IDENTITY_KEY: json.dumps(identity)} if identity else None
    digest, path = store.write(f"{model}/snapshots", frame, metadata)
    written = str(path.relative_to(store.root))
    with transaction(conn):
        existing = conn.execute("SELECT * FROM snapshots WHERE model = ? AND hash = ?", (model, digest)).fetchone()
        if existing is None:
            other = conn.execute(
                "SELECT path FROM snapshots WHERE hash = ? ORDER BY created_at, rowid LIMIT 1", (digest,)
            ).fetchone()
            shared = other[0] if other and (store.root / other[0]).is_file() else written
            parent = conn.execute(
                "SELECT hash FROM snapshots WHERE model = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (model,),
            ).fetchone()
            times = frame[event_time] if frame.height else None
            row = {
                "hash": digest,
                "model": model,
                "path": shared,
                "rows": frame.height,
                "quarantined": quarantined,
                "source": source,
                "min_event_time": times.min().isoformat() if times is not None else None,
                "max_event_time": times.max().isoformat() if times is not None else None,
                "schema_json": json.dumps({k: str(v) for k, v in frame.schema.items()}),
                "parent": parent[0] if parent else None,
                "created_at": time.time(),
            }
            conn.execute(
                f"INSERT INTO snapshots ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
        recorded = conn.execute("SELECT * FROM snapshots WHERE model = ? AND hash = ?", (model, digest)).fetchone()
    if recorded["path"] != written:
        # Another model's file holds these bytes; no row names the copy just written (one naming it
        # would be this model's own row for this hash, and that names the shared file), so drop it.
        path.unlink(missing_ok=True)
    return _snapshot(recorded), existing is None


def list_snapshots(conn: sqlite3.Connection, model: str) -> list[Snapshot]:
    """A model's snapshots, oldest first."""
    rows = conn.execute("SELECT * FROM snapshots WHERE model = ? ORDER BY created_at, rowid", (model,))
    return [_snapshot(r) for r in rows]


def read_snapshots(store: OfflineStore, snapshots: list[Snapshot]) -> pl.DataFrame:
    """All rows of the given snapshots (oldest first) as one frame. Rows sharing a value of a column that
    identifies rows (a contract's unique field) are one row, the newest snapshot's; other rows are each an
    event, however alike: two batches that both hold a row hold two events (the same batch ingested twice
    is one snapshot, by its hash)."""
    if not snapshots:
        raise NotFound("no data snapshot to read; ingest the model's source first")
    frames = [
        pl.read_parquet(store.root / s.path).with_columns(pl.lit(i, pl.UInt32).alias(_POSITION))
        for i, s in enumerate(snapshots)
    ]
    frame = pl.concat(frames, how="vertical_relaxed")
    if len(snapshots) > 1:
        for column in identity_columns(store, snapshots):
            if column in frame.columns:  # a null identifies nothing: its row stays
                newest = pl.col(_POSITION) == pl.col(_POSITION).max().over(column)
                frame = frame.filter(pl.col(column).is_null() | newest)
    return frame.drop(_POSITION)


def identity_columns(store: OfflineStore, snapshots: list[Snapshot]) -> list[str]:
    """The columns any of the snapshots names as identifying its rows, in the order first named."""
    named: dict[str, None] = {}
    for s in snapshots:
        named |= dict.fromkeys(json.loads(store.metadata(s.path).get(IDENTITY_KEY, "[]")))
    return list(named)


def data_version(snapshots: list[Snapshot]) -> str:
    """One hash naming exactly this set of snapshots (order-independent)."""
    return hashlib.sha256("\n".join(sorted(s.hash for s in snapshots)).encode()).hexdigest()


def _snapshot(row: sqlite3.Row) -> Snapshot:
    data = dict(row)
    data["schema"] = json.loads(data.pop("schema_json"))
    return Snapshot(**data)


def find_snapshots(conn: sqlite3.Connection, prefix: str, model: str | None = None) -> list[Snapshot]:
    """Every model's snapshot (or only ``model``'s) whose hash starts with ``prefix``; models that read
    the same bytes each have one. Unknown prefixes, and those naming several hashes, are errors."""
    pattern = prefix.lower().replace("%", "").replace("_", "")
    rows = (
        conn.execute(
            "SELECT * FROM snapshots WHERE hash LIKE ?1 || '%' AND (?2 IS NULL OR model = ?2) ORDER BY model",
            (pattern, model),
        ).fetchall()
        if pattern
        else []
    )
    if not rows:
        of = f" for model '{model}'" if model is not None else ""
        raise NotFound(f"no snapshot hash starts with '{prefix}'{of}; see `appliance data list MODEL`")
    if len({r["hash"] for r in rows}) > 1:
        raise InvalidInput(f"'{prefix}' names more than one snapshot; give more of the hash")
    return [_snapshot(r) for r in rows]


def find_snapshot(conn: sqlite3.Connection, prefix: str, model: str | None = None) -> Snapshot:
    """The snapshot whose hash starts with ``prefix`` (of ``model``, where several models hold it)."""
    found = find_snapshots(conn, prefix, model)
    if len(found) > 1:
        raise InvalidInput(
            f"snapshot {found[0].hash[:12]} belongs to models {', '.join(s.model for s in found)}; "
            "say which with --model"
        )
    return found[0]


def find_snapshot_pair(
    conn: sqlite3.Connection, old: str, new: str, model: str | None = None
) -> tuple[Snapshot, Snapshot]:
    """Two snapshots to compare; where a hash is several models', the one model holding both is meant
    (with none holding both, any model's row will do: the bytes compared are the same)."""
    olds, news = find_snapshots(conn, old, model), find_snapshots(conn, new, model)
    common = sorted({s.model for s in olds} & {s.model for s in news})
    if not common or (len(olds) == 1 and len(news) == 1):
        return olds[0], news[0]
    if len(common) > 1:
        models = sorted({s.model for s in olds + news})
        raise InvalidInput(
            f"snapshots {olds[0].hash[:12]} and {news[0].hash[:12]} belong to models "
            f"{', '.join(models)}; say which with --model"
        )
    return (next(s for s in olds if s.model == common[0]), next(s for s in news if s.model == common[0]))


def versions_trained_on(conn: sqlite3.Connection, digest: str, model: str | None = None) -> list[tuple[str, int]]:
    """(model, version) of every registered version (of ``model``, if given) whose training run read this
    snapshot."""
    rows = conn.execute(
        "SELECT v.model, v.version FROM model_versions v JOIN runs r ON r.id = v.run_id, "
        "json_each(r.data_snapshots_json) j WHERE j.value = ?1 AND (?2 IS NULL OR v.model = ?2) "
        "ORDER BY v.model, v.version",
        (digest, model),
    )
    return [(r[0], r[1]) for r in rows]


class SnapshotDiff(msgspec.Struct):
    old: Snapshot
    new: Snapshot
    added_columns: dict[str, str]
    removed_columns: dict[str, str]
    retyped_columns: dict[str, tuple[str, str]]
    only_in_old: int | None  # rows (with multiplicity) in old but not in new; None if the schemas differ
    only_in_new: int | None


def diff_snapshots(store: OfflineStore, old: Snapshot, new: Snapshot) -> SnapshotDiff:
    """What changed between two snapshots: columns, and rows on either side only (DuckDB over Parquet)."""
    a, b = old.schema, new.schema
    only_old = only_new = None
    if a == b:
        con = duckdb.connect(":memory:")
        try:
            pa, pb = (str(store.root / s.path) for s in (old, new))
            only_old = con.execute(
                "SELECT count(*) FROM (SELECT * FROM read_parquet(?) EXCEPT ALL SELECT * FROM read_parquet(?))",
                [pa, pb],
            ).fetchone()[0]
            only_new = con.execute(
                "SELECT count(*) FROM (SELECT * FROM read_parquet(?) EXCEPT ALL SELECT * FROM read_parquet(?))",
                [pb, pa],
            ).fetchone()[0]
        finally:
            con.close()
    return SnapshotDiff(
        old,
        new,
        added_columns={k: v for k, v in b.items() if k not in a},
        removed_columns={k: v for k, v in a.items() if k not in b},
        retyped_columns={k: (a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k]},
        only_in_old=only_old,
        only_in_new=only_new,
    )

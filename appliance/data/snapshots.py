"""Versioned snapshots: each accepted batch is an immutable, content-hashed Parquet file."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import msgspec
import polars as pl

from appliance.errors import NotFound
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
    """All rows of the given snapshots as one frame."""
    if not snapshots:
        raise NotFound("no data snapshot to read; ingest the model's source first")
    return pl.concat([pl.read_parquet(store.root / s.path) for s in snapshots], how="vertical_relaxed")


def data_version(snapshots: list[Snapshot]) -> str:
    """One hash naming exactly this set of snapshots (order-independent)."""
    return hashlib.sha256("\n".join(sorted(s.hash for s in snapshots)).encode()).hexdigest()


def _snapshot(row: sqlite3.Row) -> Snapshot:
    data = dict(row)
    data["schema"] = json.loads(data.pop("schema_json"))
    return Snapshot(**data)

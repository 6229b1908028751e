"""Online store: a SQLite key-value table of the latest values per entity, one namespace per writer.

A namespace is replaced in one transaction, so a reader (another process, in WAL mode) sees the
old rows or the new ones, never a mix, and picks up the new ones on its next read.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from storage.database import connect, transaction
from storage.online_schema import MIGRATIONS

# SQLite's default limit on host parameters is 32766; stay well under it per query.
KEYS_PER_QUERY = 500
_INSERT_POINT = "INSERT INTO tail_points (namespace, entity, t, col, n, s, lo, hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# Partials of events at the same instant add up (SQLite's two-argument min and max are NULL if either is).
_MERGE_POINT = (_INSERT_POINT + " ON CONFLICT (namespace, entity, t, col) DO UPDATE SET n = n + excluded.n, "
                "s = coalesce(s + excluded.s, s, excluded.s), lo = coalesce(min(lo, excluded.lo), lo, excluded.lo), "
                "hi = coalesce(max(hi, excluded.hi), hi, excluded.hi)")
# Each entity's newest point: max(t) on the primary key is one seek to the end of its range.
_NEWEST = "SELECT value, (SELECT max(t) FROM tail_points WHERE namespace = ?1 AND entity = value) FROM json_each(?2)"
_READ_ONE = "SELECT feature_time, payload FROM feature_rows WHERE namespace = ? AND entity = ?"


class OnlineStore:
    """``online.db`` under a data directory; one connection per thread, opened on first use."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, MIGRATIONS)
        return conn

    def replace(self, namespace: str, rows: Iterable[tuple[str, int | None, bytes]], detail: dict,
                points: Iterable[tuple] = ()) -> int:
        """Replace every row of a namespace with (entity, feature_time, payload) rows and its tail points
        with (entity, t, col, n, s, lo, hi) ones; returns the row count."""
        conn = self._conn()
        with transaction(conn):
            conn.execute("DELETE FROM feature_rows WHERE namespace = ?", (namespace,))
            conn.execute("DELETE FROM tail_points WHERE namespace = ?", (namespace,))
            cursor = conn.executemany(
                "INSERT INTO feature_rows (namespace, entity, feature_time, payload) VALUES (?, ?, ?, ?)",
                ((namespace, entity, at, payload) for entity, at, payload in rows))
            count = cursor.rowcount
            conn.executemany(_INSERT_POINT, ((namespace, *point) for point in points))
            conn.execute(
                "INSERT INTO materializations (namespace, rows, detail_json, written_at, tails) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (namespace) DO UPDATE SET rows = excluded.rows, "
                "detail_json = excluded.detail_json, written_at = excluded.written_at, tails = 1",
                (namespace, count, json.dumps(detail), time.time()))
        return count

    def read(self, namespace: str, entities: list[str]) -> dict[str, tuple[int | None, bytes]]:
        """The stored (feature_time, payload) of each entity that has a row."""
        conn, found = self._conn(), {}
        if len(entities) == 1:  # the serving case: one fixed statement, so SQLite's statement cache reuses it
            row = conn.execute(_READ_ONE, (namespace, entities[0])).fetchone()
            if row is not None:
                found[entities[0]] = (row[0], row[1])
            return found
        for start in range(0, len(entities), KEYS_PER_QUERY):
            chunk = entities[start:start + KEYS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            for entity, at, payload in conn.execute(
                    f"SELECT entity, feature_time, payload FROM feature_rows "
                    f"WHERE namespace = ? AND entity IN ({marks})", (namespace, *chunk)):
                found[entity] = (at, payload)
        return found

    def advance(self, namespace: str, points: Iterable[tuple], entities: list[str], horizon: int,
                rows_sql: str) -> int:
        """Move entities' rows forward in one transaction: merge ``tail_points`` rows (namespace, entity,
        t, col, n, s, lo, hi) into their tails, drop the points more than ``horizon`` before each entity's
        newest, and write the row ``rows_sql`` selects for each — (entity, feature_time, payload) from the
        tail, given the parameters ?1 namespace, ?2 entity, ?3 its newest time. Returns the rows written."""
        conn = self._conn()
        with transaction(conn):
            conn.executemany(_MERGE_POINT, points)
            newest = [(entity, at) for entity, at in conn.execute(_NEWEST, (namespace, json.dumps(entities)))
                      if at is not None]  # an entity given without points has no row to move
            conn.executemany("INSERT OR REPLACE INTO feature_rows (namespace, entity, feature_time, payload) "
                             f"SELECT ?1, * FROM ({rows_sql})", [(namespace, entity, at) for entity, at in newest])
            # Trimmed after the rows are written: they read only the points within ``horizon`` of the newest.
            conn.executemany("DELETE FROM tail_points WHERE namespace = ? AND entity = ? AND t < ?",
                             [(namespace, entity, at - horizon) for entity, at in newest])
        return len(newest)

    def materialization(self, namespace: str) -> dict | None:
        """When a namespace was last written, its row count and the writer's detail; None if never."""
        row = self._conn().execute("SELECT * FROM materializations WHERE namespace = ?", (namespace,)).fetchone()
        if row is None:
            return None
        return {"rows": row["rows"], "written_at": row["written_at"], "tails": bool(row["tails"]),
                **json.loads(row["detail_json"])}

    def entities(self, namespace: str) -> list[str]:
        """Every entity stored in a namespace, sorted."""
        rows = self._conn().execute("SELECT entity FROM feature_rows WHERE namespace = ? ORDER BY entity",
                                    (namespace,))
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

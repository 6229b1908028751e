"""Online store: a SQLite key-value table of the latest values per entity, one namespace per writer.

A namespace is replaced in one transaction, so a reader (another process, in WAL mode) sees the
old rows or the new ones, never a mix, and picks up the new ones on its next read.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from storage.database import connect, transaction
from storage.online_schema import MIGRATIONS

ONLINE_DB = "online.db"  # under the data directory
# SQLite's default limit on host parameters is 32766; stay well under it per query.
KEYS_PER_QUERY = 500
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

    def replace(self, namespace: str, rows: Iterable[tuple[str, int | None, bytes, bytes]], detail: dict) -> int:
        """Replace every row of a namespace with (entity, feature_time, payload, tail) rows; returns the count."""
        conn = self._conn()
        with transaction(conn):
            conn.execute("DELETE FROM feature_rows WHERE namespace = ?", (namespace,))
            cursor = conn.executemany(
                "INSERT INTO feature_rows (namespace, entity, feature_time, payload, tail) VALUES (?, ?, ?, ?, ?)",
                ((namespace, *row) for row in rows))
            count = cursor.rowcount
            conn.execute(
                "INSERT INTO materializations (namespace, rows, detail_json, written_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace) DO UPDATE SET rows = excluded.rows, "
                "detail_json = excluded.detail_json, written_at = excluded.written_at",
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

    def update(self, changes: dict[str, list[str]], step: Callable[[str, str, tuple | None], tuple | None]) -> int:
        """Move rows forward in one transaction: for each namespace's entities, ``step(namespace, entity,
        (feature_time, payload, tail) or None)`` gives the new (feature_time, payload, tail), or None to
        leave the row as it is. Returns how many rows were written."""
        conn, written = self._conn(), 0
        with transaction(conn):
            for namespace, entities in changes.items():
                found = {}
                for start in range(0, len(entities), KEYS_PER_QUERY):
                    chunk = entities[start:start + KEYS_PER_QUERY]
                    for entity, *row in conn.execute(
                            f"SELECT entity, feature_time, payload, tail FROM feature_rows "
                            f"WHERE namespace = ? AND entity IN ({','.join('?' * len(chunk))})", (namespace, *chunk)):
                        found[entity] = tuple(row)
                rows = []
                for entity in entities:
                    new = step(namespace, entity, found.get(entity))
                    if new is not None:
                        rows.append((namespace, entity, *new))
                conn.executemany("INSERT OR REPLACE INTO feature_rows (namespace, entity, feature_time, payload, tail) "
                                 "VALUES (?, ?, ?, ?, ?)", rows)
                written += len(rows)
        return written

    def materialization(self, namespace: str) -> dict | None:
        """When a namespace was last written, its row count and the writer's detail; None if never."""
        row = self._conn().execute("SELECT * FROM materializations WHERE namespace = ?", (namespace,)).fetchone()
        if row is None:
            return None
        return {"rows": row["rows"], "written_at": row["written_at"], **json.loads(row["detail_json"])}

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

"""Online store: a SQLite key-value table of the latest values per entity, one namespace per writer.

A namespace is replaced in one transaction, so a reader (another process, in WAL mode) sees the
old rows or the new ones, never a mix, and picks up the new ones on its next read. A replacement
keeps what each entity's tail holds past the row it is given (events served since that row's
time), so no row goes back to an older event time than it held.
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
_MERGE_POINT = (
    _INSERT_POINT + " ON CONFLICT (namespace, entity, t, col) DO UPDATE SET n = n + excluded.n, "
    "s = coalesce(s + excluded.s, s, excluded.s), lo = coalesce(min(lo, excluded.lo), lo, excluded.lo), "
    "hi = coalesce(max(hi, excluded.hi), hi, excluded.hi)"
)
# Each entity's newest point: max(t) on the primary key is one seek to the end of its range.
_NEWEST = "SELECT value, (SELECT max(t) FROM tail_points WHERE namespace = ?1 AND entity = value) FROM json_each(?2)"
_READ_ONE = "SELECT feature_time, payload FROM feature_rows WHERE namespace = ? AND entity = ?"
_POINTS_AFTER = "SELECT * FROM tail_points WHERE namespace = ? AND entity = ? AND t > ?"
_BEFORE_ANY = -(2**63)  # below every event time: an entity without a row time keeps all its points


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

    def replace(
        self,
        namespace: str,
        rows: Iterable[tuple[str, int | None, bytes]],
        detail: dict,
        points: Iterable[tuple],
        horizon: int,
        rows_sql: str,
    ) -> tuple[int, int]:
        """Replace every row of a namespace with (entity, feature_time, payload) rows and its tail points
        with (entity, t, col, n, s, lo, hi) ones (none later than their entity's row), except what a tail
        holds past its entity's given row: those points (events served since; all of them for an entity
        given no row or one without a time) are kept, and the row is rewritten from the merged tail as
        ``advance`` does (``horizon`` and ``rows_sql`` as it takes them). Returns the namespace's row count
        and how many rows kept points."""
        rows = list(rows)
        given = {entity: at for entity, at, _ in rows}
        conn = self._conn()
        with transaction(conn):  # one transaction: an event the writer applies meanwhile is kept, or comes after
            newest: list[tuple[str, int]] = []
            kept: list[tuple] = []
            for entity, at in conn.execute(
                "SELECT entity, max(t) FROM tail_points WHERE namespace = ? GROUP BY entity", (namespace,)
            ).fetchall():
                since = given.get(entity)
                since = _BEFORE_ANY if since is None else since
                if at > since:
                    newest.append((entity, at))
                    kept.extend(tuple(point) for point in conn.execute(_POINTS_AFTER, (namespace, entity, since)))
            conn.execute("DELETE FROM feature_rows WHERE namespace = ?", (namespace,))
            conn.execute("DELETE FROM tail_points WHERE namespace = ?", (namespace,))
            conn.executemany(
                "INSERT INTO feature_rows (namespace, entity, feature_time, payload) VALUES (?, ?, ?, ?)",
                ((namespace, entity, at, payload) for entity, at, payload in rows),
            )
            conn.executemany(_INSERT_POINT, ((namespace, *point) for point in points))
            conn.executemany(_INSERT_POINT, kept)  # all later than the given points of their entity: no conflict
            _rewrite(conn, namespace, newest, horizon, rows_sql)
            count = conn.execute("SELECT count(*) FROM feature_rows WHERE namespace = ?", (namespace,)).fetchone()[0]
            conn.execute(
                "INSERT INTO materializations (namespace, rows, detail_json, written_at, tails) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (namespace) DO UPDATE SET rows = excluded.rows, "
                "detail_json = excluded.detail_json, written_at = excluded.written_at, tails = 1",
                (namespace, count, json.dumps(detail), time.time()),
            )
        return count, len(newest)

    def read(self, namespace: str, entities: list[str]) -> dict[str, tuple[int | None, bytes]]:
        """The stored (feature_time, payload) of each entity that has a row."""
        conn, found = self._conn(), {}
        if len(entities) == 1:  # the serving case: one fixed statement, so SQLite's statement cache reuses it
            row = conn.execute(_READ_ONE, (namespace, entities[0])).fetchone()
            if row is not None:
                found[entities[0]] = (row[0], row[1])
            return found
        for start in range(0, len(entities), KEYS_PER_QUERY):
            chunk = entities[start : start + KEYS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            for entity, at, payload in conn.execute(
                f"SELECT entity, feature_time, payload FROM feature_rows WHERE namespace = ? AND entity IN ({marks})",
                (namespace, *chunk),
            ):
                found[entity] = (at, payload)
        return found

    def advance(self, namespace: str, points: Iterable[tuple], entities: list[str], horizon: int, rows_sql: str) -> int:
        """Move entities' rows forward in one transaction: merge ``tail_points`` rows (namespace, entity,
        t, col, n, s, lo, hi) into their tails, drop the points more than ``horizon`` before each entity's
        newest, and write the row ``rows_sql`` selects for each — (entity, feature_time, payload) from the
        tail, given the parameters ?1 namespace, ?2 entity, ?3 its newest time. Returns the rows written."""
        conn = self._conn()
        with transaction(conn):
            conn.executemany(_MERGE_POINT, points)
            newest = [
                (entity, at)
                for entity, at in conn.execute(_NEWEST, (namespace, json.dumps(entities)))
                if at is not None
            ]  # an entity given without points has no row to move
            _rewrite(conn, namespace, newest, horizon, rows_sql)
        return len(newest)

    def materialization(self, namespace: str) -> dict | None:
        """When a namespace was last written, its row count and the writer's detail; None if never."""
        row = self._conn().execute("SELECT * FROM materializations WHERE namespace = ?", (namespace,)).fetchone()
        if row is None:
            return None
        return {
            "rows": row["rows"],
            "written_at": row["written_at"],
            "tails": bool(row["tails"]),
            **json.loads(row["detail_json"]),
        }

    def entities(self, namespace: str) -> list[str]:
        """Every entity stored in a namespace, sorted."""
        rows = self._conn().execute("SELECT entity FROM feature_rows WHERE namespace = ? ORDER BY entity", (namespace,))
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _rewrite(
    conn: sqlite3.Connection, namespace: str, newest: list[tuple[str, int]], horizon: int, rows_sql: str
) -> None:
    # Each (entity, newest time)'s row from its tail, then the tail trimmed to ``horizon`` before it: trimmed
    # after the rows are written, which read only the points within ``horizon`` of the newest.
    conn.executemany(
        "INSERT OR REPLACE INTO feature_rows (namespace, entity, feature_time, payload) "
        f"SELECT ?1, * FROM ({rows_sql})",
        [(namespace, entity, at) for entity, at in newest],
    )
    conn.executemany(
        "DELETE FROM tail_points WHERE namespace = ? AND entity = ? AND t < ?",
        [(namespace, entity, at - horizon) for entity, at in newest],
    )

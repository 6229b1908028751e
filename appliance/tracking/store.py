"""Writes to tracking.db: run rows at once, metric points batched so logging never slows training."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path

from storage.database import connect, transaction
from storage.tracking_schema import MIGRATIONS

FLUSH_ROWS = 2_000  # a batch this large is written at once …
FLUSH_SECONDS = 2.0  # … and none waits longer than this (checked when the next point arrives)


class TrackingStore:
    """One process's connection to tracking.db, with a buffer of metric points not yet written."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = connect(self.path, MIGRATIONS)
        self._pending: list[tuple[str, str, int, float | None, float]] = []
        self._oldest = 0.0
        self._lock = threading.Lock()

    def add_metric(self, run_id: str, name: str, step: int, value: float) -> None:
        """Queue one metric point; the queue is written when it is large or old enough."""
        now = time.time()
        with self._lock:
            if not self._pending:
                self._oldest = now
            self._pending.append((run_id, name, step, None if math.isnan(value) else value, now))
            due = len(self._pending) >= FLUSH_ROWS or now - self._oldest >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        """Write every queued metric point in one transaction."""
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            with transaction(self.conn):
                self.conn.executemany(
                    "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?, ?, ?, ?, ?)", rows
                )

    def write(self, sql: str, rows: list[tuple]) -> None:
        """Write rows of a small table (params, tags, artifacts, run rows) in one transaction."""
        with transaction(self.conn):
            self.conn.executemany(sql, rows)

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Read, after writing what is queued so a reader sees its own points."""
        self.flush()
        return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self.flush()
        self.conn.close()


def encode_value(value: object) -> str:
    """A param value as JSON (anything JSON cannot hold is kept as its text)."""
    return json.dumps(value, default=str)

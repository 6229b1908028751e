"""Run records: every training run, with its parameters, metrics, data and code version."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

from storage.database import transaction


def start_run(conn: sqlite3.Connection, model: str, kind: str, params: dict, code_version: str) -> str:
    """Record a run as started and return its id."""
    run_id = uuid.uuid4().hex
    with transaction(conn):
        conn.execute(
            "INSERT INTO runs (id, model, kind, status, started_at, params_json, code_version) "
            "VALUES (?, ?, ?, 'running', ?, ?, ?)",
            (run_id, model, kind, time.time(), json.dumps(params), code_version),
        )
    return run_id


def finish_run(conn: sqlite3.Connection, run_id: str, *, status: str, metrics: dict | None = None,
               snapshots: list[str] | None = None, error: str | None = None) -> None:
    """Record a run's end: succeeded or failed, with what it measured and read."""
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = ?, ended_at = ?, metrics_json = ?, data_snapshots_json = ?, error = ? "
            "WHERE id = ?",
            (status, time.time(), json.dumps(metrics or {}), json.dumps(snapshots or []), error, run_id),
        )

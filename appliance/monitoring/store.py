"""monitoring.db through one read/write API: results as a tidy time series and the job runs."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
import polars as pl

from appliance.errors import Conflict, InvalidInput
from appliance.home import Home
from appliance.layout import Layout
from appliance.monitoring.windows import CHECK_SCHEMA
from storage.database import connect, transaction
from storage.monitoring_schema import MIGRATIONS

CHECKS = ("quality", "drift", "performance", "estimated", "serving", "machine", "pipeline")
# The checks' tidy frame (windows.CHECK_SCHEMA), with what places a row in the series around it.
RESULT_SCHEMA = {
    "model": pl.String,
    "version": pl.Int64,
    "window_start": CHECK_SCHEMA["window_start"],
    "window_end": CHECK_SCHEMA["window_start"],
    "check": pl.String,
    **{k: t for k, t in CHECK_SCHEMA.items() if k != "window_start"},
    "computed_at": pl.Float64,
}
_COLUMNS = list(RESULT_SCHEMA)


class JobRun(msgspec.Struct, frozen=True):
    id: int
    job: str
    model: str
    started_at: float
    ended_at: float | None
    status: str  # running | succeeded | failed
    error: str | None
    summary: dict
    pid: int
    trigger: str  # schedule | manual | replay


def open_monitoring(root: Path) -> sqlite3.Connection:
    """monitoring.db of a data directory, created and migrated on first use."""
    return connect(Layout(root).monitoring_db, MIGRATIONS)


def results(
    home: Home, model: str, check: str | None = None, since: datetime | date | str | None = None
) -> pl.DataFrame:
    """A model's stored results (RESULT_SCHEMA), by window then check, feature and method."""
    home.registry.model(model)
    sql, args = "SELECT * FROM results WHERE model = ?", [model]
    if check is not None:
        if check not in CHECKS:
            raise InvalidInput(f"unknown check '{check}'; use one of {', '.join(CHECKS)}")
        sql, args = sql + ' AND "check" = ?', [*args, check]
    if since is not None:
        sql, args = sql + " AND window_start >= ?", [*args, iso(_since(since))]
    conn = open_monitoring(home.root)
    try:
        rows = conn.execute(sql + ' ORDER BY window_start, "check", feature, method', args).fetchall()
    finally:
        conn.close()
    return _frame([tuple(r) for r in rows])


def write_results(conn: sqlite3.Connection, frame: pl.DataFrame) -> None:
    """Insert or replace result rows (a recomputed window replaces what was there)."""
    rows = [(*r[:2], iso(r[2]), iso(r[3]), *r[4:10], int(r[10]), r[11]) for r in frame.select(_COLUMNS).iter_rows()]
    placeholders = ", ".join("?" * len(_COLUMNS))
    names = ", ".join(f'"{c}"' for c in _COLUMNS)
    with transaction(conn):
        conn.executemany(f"INSERT OR REPLACE INTO results ({names}) VALUES ({placeholders})", rows)


def empty_results() -> pl.DataFrame:
    return pl.DataFrame(schema=RESULT_SCHEMA)


def last_computed(conn: sqlite3.Connection, model: str, check: str, method: str) -> float | None:
    """When a result of the model's check and method was last computed; None if never."""
    row = conn.execute(
        'SELECT MAX(computed_at) FROM results WHERE model = ? AND "check" = ? AND method = ?', (model, check, method)
    ).fetchone()
    return row[0]


# -- the windows each monitor run has judged -------------------------------------------------------


def window_states(conn: sqlite3.Connection, model: str, version: int) -> dict[str, tuple]:
    """Per window start (ISO text): (rows, last_received_at, labels, last_label_at) as the last run saw them."""
    return {
        r[0]: tuple(r)[1:]
        for r in conn.execute(
            "SELECT window_start, rows, last_received_at, labels, last_label_at FROM windows "
            "WHERE model = ? AND version = ?",
            (model, version),
        )
    }


def record_windows(
    conn: sqlite3.Connection, model: str, version: int, states: pl.DataFrame, computed_at: float
) -> None:
    """Remember the state of the windows a run judged (columns as ``window_states`` returns them)."""
    with transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO windows (model, version, window_start, rows, last_received_at, labels, "
            "last_label_at, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    model,
                    version,
                    iso(r["window_start"]),
                    r["rows"],
                    r["last_received_at"],
                    r["labels"],
                    r["last_label_at"],
                    computed_at,
                )
                for r in states.iter_rows(named=True)
            ],
        )


def finished_pipeline_statuses(conn: sqlite3.Connection, model: str) -> list[str]:
    """The statuses of the model's finished training runs in metadata.db, newest first (registrations of
    models trained elsewhere are not runs of its pipeline, nor are retrains skipped for want of anything new:
    they trained nothing, so they say nothing of whether training works)."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT status FROM runs WHERE model = ? AND status NOT IN ('running', 'skipped') AND kind != 'register' "
            "ORDER BY started_at DESC",
            (model,),
        )
    ]


# -- job runs ------------------------------------------------------------------------------------


def begin_job_run(conn: sqlite3.Connection, job: str, model: str, trigger: str) -> int:
    """Record a job run as running; Conflict if the same job for the model is running already.

    A 'running' row whose process is gone (killed, crashed) is marked failed first, so a dead
    run never blocks the job forever.
    """
    with transaction(conn):
        for row in conn.execute(
            "SELECT id, pid, started_at FROM job_runs WHERE job = ? AND model = ? AND status = 'running'", (job, model)
        ).fetchall():
            if _alive(row["pid"]):
                raise Conflict(
                    f"job '{job}' for '{model}' is already running (run {row['id']}, pid {row['pid']}, "
                    f"since {datetime.fromtimestamp(row['started_at'], UTC):%Y-%m-%d %H:%M:%S} UTC); "
                    "wait for it to finish"
                )
            conn.execute(
                "UPDATE job_runs SET status = 'failed', ended_at = ?, error = ? WHERE id = ?",
                (time.time(), f"process {row['pid']} ended without finishing the run", row["id"]),
            )
        cursor = conn.execute(
            "INSERT INTO job_runs (job, model, started_at, status, pid, trigger) VALUES (?, ?, ?, 'running', ?, ?)",
            (job, model, time.time(), os.getpid(), trigger),
        )
        return cursor.lastrowid


def end_job_run(
    conn: sqlite3.Connection, run_id: int, status: str, error: str | None = None, summary: dict | None = None
) -> None:
    """Close a job run with its status, error and summary."""
    with transaction(conn):
        conn.execute(
            "UPDATE job_runs SET status = ?, ended_at = ?, error = ?, summary_json = ? WHERE id = ?",
            (status, time.time(), error, json.dumps(summary or {}, default=str), run_id),
        )


def job_runs(home: Home, job: str | None = None, model: str | None = None, limit: int = 50) -> list[JobRun]:
    """Recent job runs, newest first, optionally of one job and/or model."""
    sql, args = "SELECT * FROM job_runs WHERE 1 = 1", []
    if job is not None:
        sql, args = sql + " AND job = ?", [*args, job]
    if model is not None:
        sql, args = sql + " AND model = ?", [*args, model]
    conn = open_monitoring(home.root)
    try:
        rows = conn.execute(sql + " ORDER BY started_at DESC, id DESC LIMIT ?", [*args, limit]).fetchall()
    finally:
        conn.close()
    return [
        JobRun(**{k: r[k] for k in r.keys() if k != "summary_json"}, summary=json.loads(r["summary_json"]))
        for r in rows
    ]


def latest_run(home: Home, model: str, job: str = "monitor") -> JobRun | None:
    """The newest run of a job for a model, or None."""
    runs = job_runs(home, job, model, limit=1)
    return runs[0] if runs else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _frame(rows: list[tuple]) -> pl.DataFrame:
    if not rows:
        return empty_results()
    raw = pl.DataFrame(
        rows, schema=[(c, pl.String if c.startswith("window") else t) for c, t in RESULT_SCHEMA.items()], orient="row"
    )
    return raw.with_columns(pl.col("window_start", "window_end").str.to_datetime(time_unit="us", time_zone="UTC"))


def _since(since: datetime | date | str) -> datetime:
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise InvalidInput(f"since {since!r} is not a date like 2026-10-20 or an ISO time") from None
    if not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day)
    try:
        return since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"since {since.isoformat()} is outside the calendar in UTC; give a time between the years 1 and 9999"
        ) from None


def iso(moment: datetime) -> str:
    """A fixed-width ISO UTC text, so text order is time order in SQLite."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

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


def write_results(conn: sqlite3.Connection, frame: pl.DataFrame, distributions: pl.DataFrame | None = None) -> None:
    """Insert or replace result rows (a recomputed window replaces what was there), and the distributions
    recorded for the same windows (DISTRIBUTION_SCHEMA) in the same transaction: a window's distributions
    are those of the rows its results judged, never of another run's."""
    rows = [(*r[:2], iso(r[2]), iso(r[3]), *r[4:10], int(r[10]), r[11]) for r in frame.select(_COLUMNS).iter_rows()]
    placeholders = ", ".join("?" * len(_COLUMNS))
    names = ", ".join(f'"{c}"' for c in _COLUMNS)
    with transaction(conn):
        conn.executemany(f"INSERT OR REPLACE INTO results ({names}) VALUES ({placeholders})", rows)
        if distributions is not None and distributions.height:
            _write_distributions(conn, distributions)


# -- the reference-vs-current distributions of each window ---------------------------------------

# A window's binned shares of one feature, as the monitor job records them (``monitoring.distributions``);
# ``labels``, ``reference`` and ``current`` are JSON lists, one entry per bin or category.
DISTRIBUTION_SCHEMA = {
    "model": pl.String,
    "version": pl.Int64,
    "window_start": CHECK_SCHEMA["window_start"],
    "feature": pl.String,
    "position": pl.Int64,  # the feature's place in the model's features: the order they are read back in
    "kind": pl.String,  # numeric | categorical
    "labels": pl.String,
    "reference": pl.String,
    "current": pl.String,
    "reference_rows": pl.Int64,
    "current_rows": pl.Int64,
    "computed_at": pl.Float64,
}
_DISTRIBUTION_COLUMNS = list(DISTRIBUTION_SCHEMA)


def _write_distributions(conn: sqlite3.Connection, frame: pl.DataFrame) -> None:
    """Replace the recorded distributions of the frame's windows (inside the caller's transaction): a feature
    no longer monitored leaves nothing behind from an earlier run of the window."""
    windows = frame.select("model", "version", "window_start").unique()
    conn.executemany(
        "DELETE FROM distributions WHERE model = ? AND version = ? AND window_start = ?",
        [(m, v, iso(w)) for m, v, w in windows.iter_rows()],
    )
    names = ", ".join(_DISTRIBUTION_COLUMNS)
    conn.executemany(
        f"INSERT INTO distributions ({names}) VALUES ({', '.join('?' * len(_DISTRIBUTION_COLUMNS))})",
        [(*r[:2], iso(r[2]), *r[3:]) for r in frame.select(_DISTRIBUTION_COLUMNS).iter_rows()],
    )


def recorded_distributions(home: Home, model: str, version: int, window_start: datetime | None) -> list[dict]:
    """The distributions recorded for one window of a version (its newest recorded window when None), in the
    model's feature order: per feature its window_start, feature, kind, labels, reference and current shares,
    reference_rows and current_rows. NotFound for a model that is not registered."""
    home.registry.model(model)
    conn = open_monitoring(home.root)
    try:
        if window_start is None:
            [key] = conn.execute(
                "SELECT MAX(window_start) FROM distributions WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
        else:
            key = iso(_since(window_start))
        rows = conn.execute(
            "SELECT * FROM distributions WHERE model = ? AND version = ? AND window_start = ? ORDER BY position",
            (model, version, key),
        ).fetchall()
    finally:
        conn.close()
    return [
        {
            "window_start": datetime.fromisoformat(r["window_start"]),
            "feature": r["feature"],
            "kind": r["kind"],
            **{side: json.loads(r[side]) for side in ("labels", "reference", "current")},
            "reference_rows": r["reference_rows"],
            "current_rows": r["current_rows"],
        }
        for r in rows
    ]


def prune_distributions(conn: sqlite3.Connection, before: datetime) -> int:
    """Delete the distributions of windows that start before ``before``; how many were deleted."""
    with transaction(conn):
        return conn.execute("DELETE FROM distributions WHERE window_start < ?", (iso(before),)).rowcount


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


def failing(home: Home, model: str) -> str | None:
    """One line when the model's newest monitor run failed: whole, no window is measured until the cause is
    fixed, whatever the results from before say; in part (its summary lists the windows it could not check),
    the others are up to date. None while the newest run succeeded, or none ran."""
    run = latest_run(home, model)
    if run is None or run.status != "failed":
        return None
    error = (run.error or "no error recorded").strip().splitlines()[0]
    error = error if len(error) <= 200 else error[:199] + "…"
    when = datetime.fromtimestamp(run.started_at, UTC)
    which = f"the newest monitor run of '{model}' (run {run.id}, {when:%Y-%m-%d %H:%M} UTC)"
    retry = f"`appliance jobs run monitor {model}` retries it"
    if run.summary.get("failed"):
        return (
            f"monitoring is incomplete: {which} could not check some windows ({error}); the others are up to "
            f"date, and those are tried again by the next run — {retry}"
        )
    return f"monitoring has stopped: {which} failed: {error}; no window is measured until it runs again — {retry}"


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

"""Pipeline run records in metadata.db: each run, each stage's status, times, error and outputs."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import msgspec

from appliance.errors import Conflict, NotFound
from storage.database import transaction


class StageRecord(msgspec.Struct, frozen=True):
    stage: str
    position: int
    status: str  # running | succeeded | failed
    started_at: float
    ended_at: float | None
    error: str | None
    outputs: dict  # the JSON of the stage's outputs Struct (training.stages), as recorded
    attempts: int


class PipelineRun(msgspec.Struct, frozen=True):
    id: str
    model: str
    kind: str
    status: str  # running | succeeded | failed | skipped (a retrain with nothing new to learn from)
    started_at: float
    ended_at: float | None
    params: dict
    metrics: dict
    data_snapshots: list[str]
    code_version: str | None
    error: str | None
    worker_pid: int | None
    attempts: int
    outcome: str | None  # what a run that registered nothing came to (a skipped retrain: why)
    stages: list[StageRecord]


def start_run(conn: sqlite3.Connection, run_id: str, model: str, kind: str, params: dict, code_version: str) -> None:
    """Record a run as started by this process."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO runs (id, model, kind, status, started_at, params_json, code_version, worker_pid) "
            "VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
            (run_id, model, kind, time.time(), json.dumps(params), code_version, os.getpid()),
        )


def restart_run(conn: sqlite3.Connection, run_id: str) -> None:
    """Mark a failed run as running again in this process (a resume)."""
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = 'running', ended_at = NULL, error = NULL, worker_pid = ?, "
            "attempts = attempts + 1 WHERE id = ?",
            (os.getpid(), run_id),
        )


def finish_run(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    status: str,
    metrics: dict | None = None,
    snapshots: list[str] | None = None,
    error: str | None = None,
    outcome: str | None = None,
) -> None:
    """Record a run's end: succeeded, failed or skipped, with what it measured and read (and, skipped, why)."""
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = ?, ended_at = ?, metrics_json = COALESCE(?, metrics_json), "
            "data_snapshots_json = COALESCE(?, data_snapshots_json), error = ?, outcome = ? WHERE id = ?",
            (
                status,
                time.time(),
                None if metrics is None else json.dumps(metrics),
                None if snapshots is None else json.dumps(snapshots),
                error,
                outcome,
                run_id,
            ),
        )


def start_stage(conn: sqlite3.Connection, run_id: str, stage: str, position: int) -> None:
    """Record a stage as running (again, if an earlier attempt failed)."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO run_stages (run_id, stage, position, status, started_at) VALUES (?, ?, ?, 'running', ?) "
            "ON CONFLICT (run_id, stage) DO UPDATE SET status = 'running', started_at = excluded.started_at, "
            "ended_at = NULL, error = NULL, attempts = attempts + 1",
            (run_id, stage, position, time.time()),
        )


def finish_stage(
    conn: sqlite3.Connection,
    run_id: str,
    stage: str,
    *,
    status: str,
    outputs: dict | None = None,
    error: str | None = None,
) -> None:
    """Record a stage's end with its outputs (what a resumed run reuses) or its error."""
    with transaction(conn):
        conn.execute(
            "UPDATE run_stages SET status = ?, ended_at = ?, outputs_json = ?, error = ? "
            "WHERE run_id = ? AND stage = ?",
            (status, time.time(), json.dumps(outputs or {}), error, run_id, stage),
        )


def abandon_runs(conn: sqlite3.Connection, model: str) -> list[str]:
    """Mark the model's 'running' runs failed; call only while holding the model's run lock.

    Holding the lock proves no live process owns them: their worker was killed or crashed.
    """
    reason = (
        "the worker process ended without finishing (killed or crashed); "
        f"resume it with `appliance train {model} --resume`"
    )
    with transaction(conn):
        ids = [r[0] for r in conn.execute("SELECT id FROM runs WHERE model = ? AND status = 'running'", (model,))]
        for run_id in ids:
            conn.execute(
                "UPDATE runs SET status = 'failed', ended_at = ?, error = ? WHERE id = ?", (time.time(), reason, run_id)
            )
            conn.execute(
                "UPDATE run_stages SET status = 'failed', ended_at = ?, error = ? "
                "WHERE run_id = ? AND status = 'running'",
                (time.time(), reason, run_id),
            )
    return ids


def pipeline_run(conn: sqlite3.Connection, run_id: str) -> PipelineRun:
    """One run with its stages in order."""
    row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise NotFound(f"no pipeline run {run_id}; see `appliance runs list`")
    data = dict(row)
    for key, name in (
        ("params_json", "params"),
        ("metrics_json", "metrics"),
        ("data_snapshots_json", "data_snapshots"),
    ):
        data[name] = json.loads(data.pop(key))
    stages = []
    for s in conn.execute("SELECT * FROM run_stages WHERE run_id = ? ORDER BY position", (run_id,)):
        s = dict(s)
        s["outputs"] = json.loads(s.pop("outputs_json"))
        s.pop("run_id")
        stages.append(StageRecord(**s))
    return PipelineRun(**data, stages=stages)


def resumable_run(conn: sqlite3.Connection, model: str, run_id: str | None) -> PipelineRun:
    """The failed run to resume: the given one, or the model's latest training run if it failed (a skipped
    retrain since, which did nothing, does not hide it)."""
    if run_id is None:
        row = conn.execute(
            "SELECT id FROM runs WHERE model = ? AND kind IN ('train', 'retrain') "
            "AND status != 'skipped' ORDER BY started_at DESC LIMIT 1",
            (model,),
        ).fetchone()
        if row is None:
            raise NotFound(f"model '{model}' has no training run to resume; run `appliance train {model}`")
        run_id = row[0]
    else:
        row = conn.execute("SELECT id FROM runs WHERE id LIKE ? || '%' AND model = ?", (run_id, model)).fetchall()
        if len(row) != 1:
            raise NotFound(f"model '{model}' has no single run with id '{run_id}'; see `appliance runs list`")
        run_id = row[0][0]
    run = pipeline_run(conn, run_id)
    if run.status != "failed":
        raise Conflict(
            f"run {run_id[:8]} of '{model}' {run.status}; only a failed run can be resumed — "
            f"start a new one with `appliance train {model}`"
        )
    return run

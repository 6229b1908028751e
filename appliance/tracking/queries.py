"""Reads of tracking.db for `appliance runs list|show|compare` (and the dashboard)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import msgspec

from appliance.errors import InvalidInput, NotFound
from appliance.tracking.store import TrackingStore


class RunSummary(msgspec.Struct, frozen=True):
    id: str
    model: str
    name: str
    kind: str
    parent_id: str | None
    status: str
    started_at: float
    ended_at: float | None
    code_version: str | None
    error: str | None
    children: int
    progress: str | None = None  # how far it got, e.g. "iteration 340/1000 · train auc 0.81" (training records it)
    verdict: str | None = None  # a training run's version: registered, or rejected by its gates

    @property
    def outcome(self) -> str:
        """Its status as a person reads it: a run that ended well but whose version its gates rejected is
        'rejected', not 'succeeded'."""
        return "rejected" if self.status == "succeeded" and self.verdict == "rejected" else self.status

    def took(self) -> str:
        """How long it ran, in seconds to a tenth; "…" while it runs."""
        return f"{self.ended_at - self.started_at:.1f}" if self.ended_at else "…"

    def cells(self, when: Callable[[float], str]) -> tuple[str, ...]:
        """The run as a row of the CLI's and the dashboard's run tables show it: short id, model, kind, name,
        status (``outcome``: a rejected version reads so), start (as ``when`` writes a time), seconds."""
        return (self.id[:8], self.model, self.kind, self.name, self.outcome, when(self.started_at), self.took())


class RunDetail(msgspec.Struct, frozen=True):
    run: RunSummary
    params: dict
    metrics: dict[str, float]  # the last point of each series
    metric_points: dict[str, int]  # how many points each series has (a training curve has many)
    tags: dict[str, str]
    artifacts: dict[str, str]  # name -> sha256
    environment: dict
    data: list[str]
    child_runs: list[RunSummary]


_SUMMARY = (
    "SELECT r.id, r.model, r.name, r.kind, r.parent_id, r.status, r.started_at, r.ended_at, "
    "r.code_version, r.error, (SELECT COUNT(*) FROM runs c WHERE c.parent_id = r.id) AS children, "
    "(SELECT value FROM tags t WHERE t.run_id = r.id AND t.key = 'progress') AS progress, "
    "(SELECT value FROM tags t WHERE t.run_id = r.id AND t.key = 'version_status') AS verdict "
    "FROM runs r"
)


def list_runs(store: TrackingStore, model: str | None = None, limit: int = 50) -> list[RunSummary]:
    """Top-level runs, newest first, optionally of one model."""
    where = " WHERE r.parent_id IS NULL" + (" AND r.model = ?" if model else "")
    rows = store.query(_SUMMARY + where + " ORDER BY r.started_at DESC LIMIT ?", (model, limit) if model else (limit,))
    return [RunSummary(**dict(r)) for r in rows]


def resolve_run(store: TrackingStore, prefix: str) -> str:
    """The full id of the one run whose id starts with ``prefix``."""
    if len(prefix) < 4:
        raise InvalidInput(f"run id '{prefix}' is too short; give at least 4 characters (see `appliance runs list`)")
    rows = store.query("SELECT id FROM runs WHERE id LIKE ? || '%' LIMIT 2", (prefix.lower(),))
    if not rows:
        raise NotFound(f"no run with id '{prefix}'; see `appliance runs list`")
    if len(rows) > 1:
        raise InvalidInput(f"run id '{prefix}' matches several runs; give more characters")
    return rows[0]["id"]


def run_detail(store: TrackingStore, prefix: str) -> RunDetail:
    """Everything recorded for one run (by id or unique id prefix)."""
    run_id = resolve_run(store, prefix)
    summary = RunSummary(**dict(store.query(_SUMMARY + " WHERE r.id = ?", (run_id,))[0]))
    row = store.query("SELECT environment_json, data_json FROM runs WHERE id = ?", (run_id,))[0]
    metrics, points = {}, {}
    for r in store.query(
        "SELECT name, COUNT(*) AS n, (SELECT value FROM metrics m2 WHERE m2.run_id = m.run_id "
        "AND m2.name = m.name ORDER BY step DESC, rowid DESC LIMIT 1) AS last "
        "FROM metrics m WHERE run_id = ? GROUP BY name ORDER BY name",
        (run_id,),
    ):
        metrics[r["name"]] = math.nan if r["last"] is None else r["last"]
        points[r["name"]] = r["n"]
    children = store.query(_SUMMARY + " WHERE r.parent_id = ? ORDER BY r.started_at", (run_id,))
    return RunDetail(
        run=summary,
        params={
            r["key"]: json.loads(r["value_json"])
            for r in store.query("SELECT key, value_json FROM params WHERE run_id = ? ORDER BY key", (run_id,))
        },
        metrics=metrics,
        metric_points=points,
        tags={
            r["key"]: r["value"]
            for r in store.query("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", (run_id,))
        },
        artifacts={
            r["name"]: r["sha256"]
            for r in store.query("SELECT name, sha256 FROM artifacts WHERE run_id = ? ORDER BY name", (run_id,))
        },
        environment=json.loads(row["environment_json"]),
        data=json.loads(row["data_json"]),
        child_runs=[RunSummary(**dict(r)) for r in children],
    )


def metric_series(store: TrackingStore, run_id: str, name: str) -> list[tuple[int, float]]:
    """One metric's (step, value) points in step order: a training curve."""
    rows = store.query(
        "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step, rowid", (run_id, name)
    )
    return [(r["step"], math.nan if r["value"] is None else r["value"]) for r in rows]

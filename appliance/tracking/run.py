"""A tracked run: params, metric series with steps, tags, hashed artifacts, data versions, child runs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from appliance.errors import NotFound
from appliance.tracking.environment import environment
from appliance.tracking.store import TrackingStore, encode_value
from storage.artifacts import ArtifactStore

PROGRESS_EVERY_S = 1.0  # how far a run has got is written at most this often: a long run's writes stay small


class TrackedRun:
    """One run in tracking.db. Use as a context manager: an exception marks it failed."""

    def __init__(
        self,
        store: TrackingStore,
        artifacts: ArtifactStore,
        run_id: str,
        model: str,
        name: str,
        parent_id: str | None = None,
        owns_store: bool = False,
    ):
        self.store = store
        self.artifacts = artifacts
        self.id = run_id
        self.model = model
        self.name = name
        self.parent_id = parent_id
        self._owns_store = owns_store
        self._steps: dict[str, int] = {}
        self._progress: str | None = None  # the latest line, and whether tracking.db has it yet
        self._progress_written = True
        self._progress_due = 0.0
        self.finished = False

    @classmethod
    def create(
        cls,
        store: TrackingStore,
        artifacts: ArtifactStore,
        *,
        model: str,
        name: str,
        kind: str,
        parent_id: str | None = None,
        run_id: str | None = None,
        owns_store: bool = False,
    ) -> TrackedRun:
        """Record a new running run with its environment and return it."""
        env = environment()
        run = cls(store, artifacts, run_id or uuid.uuid4().hex, model, name, parent_id, owns_store)
        store.write(
            "INSERT INTO runs (id, model, name, kind, parent_id, status, started_at, code_version, "
            "environment_json) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            [(run.id, model, name, kind, parent_id, time.time(), env["code_version"], json.dumps(env))],
        )
        return run

    @classmethod
    def reopen(cls, store: TrackingStore, artifacts: ArtifactStore, run_id: str) -> TrackedRun:
        """Continue a run that stopped (a resumed pipeline run, a re-run trial): metric steps carry on."""
        rows = store.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise NotFound(f"no tracked run {run_id}; see `appliance runs list`")
        row = rows[0]
        run = cls(store, artifacts, run_id, row["model"], row["name"], row["parent_id"])
        for r in store.query("SELECT name, MAX(step) AS last FROM metrics WHERE run_id = ? GROUP BY name", (run_id,)):
            run._steps[r["name"]] = r["last"] + 1
        store.write("UPDATE runs SET status = 'running', ended_at = NULL, error = NULL WHERE id = ?", [(run_id,)])
        return run

    # -- what a training script logs -------------------------------------------------------------

    def log_param(self, key: str, value: object) -> None:
        """Record one hyperparameter (a later value for the same key replaces it)."""
        self.log_params({key: value})

    def log_params(self, params: dict) -> None:
        """Record hyperparameters."""
        self.store.write(
            "INSERT OR REPLACE INTO params (run_id, key, value_json) VALUES (?, ?, ?)",
            [(self.id, str(k), encode_value(v)) for k, v in params.items()],
        )

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record one point of a metric series; without a step it follows the series' last point."""
        if step is None:
            step = self._steps.get(name, 0)
        self._steps[name] = step + 1
        self.store.add_metric(self.id, name, int(step), float(value))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record several metrics at the same step."""
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def set_tag(self, key: str, value: object) -> None:
        """Label the run (a later value for the same key replaces it)."""
        self.set_tags({key: value})

    def set_tags(self, tags: dict) -> None:
        """Label the run with several tags."""
        self.store.write(
            "INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?, ?, ?)",
            [(self.id, str(k), str(v)) for k, v in tags.items()],
        )

    def log_artifact(self, name: str, data: bytes | Path) -> str:
        """Store bytes (or a file's bytes) in the content-addressed store; returns their sha256."""
        payload = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
        digest = self.artifacts.put(payload)
        self.store.write(
            "INSERT OR REPLACE INTO artifacts (run_id, name, sha256, bytes) VALUES (?, ?, ?, ?)",
            [(self.id, name, digest, len(payload))],
        )
        return digest

    def show_progress(self, line: str) -> None:
        """Record how far the run is (``iteration 340/1000 · train binary_logloss 0.08``, a line of
        ``appliance.progress``) as its ``progress`` tag, at most once a second; the Runs tab shows it while the
        run is running."""
        self._progress, self._progress_written = line, False
        now = time.monotonic()
        if now >= self._progress_due:
            self._progress_due = now + PROGRESS_EVERY_S
            self._write_progress()

    def _write_progress(self) -> None:
        if not self._progress_written:
            self.set_tag("progress", self._progress)
            self._progress_written = True

    def log_data(self, snapshot_hashes: list[str]) -> None:
        """Record the data snapshots the run read."""
        self.store.write("UPDATE runs SET data_json = ? WHERE id = ?", [(json.dumps(snapshot_hashes), self.id)])

    def child(self, name: str, kind: str = "trial") -> TrackedRun:
        """A child run under this one; an existing child of that name is continued (a resumed search)."""
        rows = self.store.query("SELECT id FROM runs WHERE parent_id = ? AND name = ?", (self.id, name))
        if rows:
            return TrackedRun.reopen(self.store, self.artifacts, rows[0]["id"])
        return TrackedRun.create(self.store, self.artifacts, model=self.model, name=name, kind=kind, parent_id=self.id)

    # -- the end ---------------------------------------------------------------------------------

    def finish(self, status: str = "succeeded", error: str | None = None) -> None:
        """Write what is queued and record the run's end."""
        self.store.flush()
        self._write_progress()  # the last line shown: where a failed run stopped
        self.store.write(
            "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?", [(status, time.time(), error, self.id)]
        )
        self.finished = True
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.finished:
            return
        if exc is None:
            self.finish("succeeded")
        else:
            self.finish("failed", f"{exc_type.__name__}: {exc}")


def fail_running(store: TrackingStore, run_id: str, error: str) -> None:
    """Mark a tracked run and its children that are still 'running' as failed (their process is gone)."""
    store.write(
        "UPDATE runs SET status = 'failed', ended_at = ?, error = ? "
        "WHERE (id = ? OR parent_id = ?) AND status = 'running'",
        [(time.time(), error, run_id, run_id)],
    )

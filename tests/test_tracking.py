"""Experiment tracking: the Python API, batched metric writes, reads for `appliance runs`."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from appliance import tracking
from appliance.errors import InvalidInput, NotFound
from appliance.tracking.queries import list_runs, metric_series, resolve_run, run_detail
from appliance.tracking.store import FLUSH_ROWS, TrackingStore
from storage.artifacts import ArtifactStore


def test_a_script_logs_params_metric_curves_tags_artifacts_and_child_runs(tmp_path):
    with tracking.start_run(model="fraud", name="my-script", home=tmp_path, tags={"owner": "ana"}) as run:
        run.log_params({"learning_rate": 0.05, "layers": [64, 32]})
        for epoch in range(5):
            run.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        run.log_metric("auc", 0.8)
        run.log_metric("auc", 0.9)  # no step: follows the series
        digest = run.log_artifact("notes.txt", b"hello")
        run.log_data(["abc123"])
        with run.child("trial-1") as trial:
            trial.log_metric("validation_auc", 0.7)
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert ArtifactStore(tmp_path / "artifacts").get(digest) == b"hello"

    store = TrackingStore(tmp_path / "tracking.db")
    detail = run_detail(store, run.id[:6])
    assert detail.run.status == "succeeded" and detail.run.kind == "script" and detail.run.children == 1
    assert detail.params == {"learning_rate": 0.05, "layers": [64, 32]}
    assert detail.metrics["loss"] == pytest.approx(0.2) and detail.metric_points["loss"] == 5
    assert metric_series(store, run.id, "auc") == [(0, 0.8), (1, 0.9)]
    assert detail.tags == {"owner": "ana"} and detail.artifacts == {"notes.txt": digest} and detail.data == ["abc123"]
    assert detail.environment["packages"]["numpy"] and detail.environment["code_version"]
    assert [c.name for c in detail.child_runs] == ["trial-1"]
    assert [r.id for r in list_runs(store, "fraud")] == [run.id]  # children are not top-level runs


def test_an_exception_marks_the_run_failed_and_keeps_what_was_logged(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with tracking.start_run(model="fraud", home=tmp_path) as run:
            run.log_metric("loss", 0.5)
            raise ZeroDivisionError("the training step failed")
    detail = run_detail(TrackingStore(tmp_path / "tracking.db"), run.id)
    assert detail.run.status == "failed" and "ZeroDivisionError" in detail.run.error
    assert detail.metrics == {"loss": 0.5}


def test_metric_points_are_written_in_batches(tmp_path):
    run = tracking.start_run(model="fraud", home=tmp_path)
    outside = sqlite3.connect(tmp_path / "tracking.db")
    count = lambda: outside.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]  # noqa: E731
    for step in range(FLUSH_ROWS - 1):
        run.log_metric("loss", 1.0, step=step)
    assert count() == 0  # queued, not yet written
    run.log_metric("loss", 1.0, step=FLUSH_ROWS - 1)
    assert count() == FLUSH_ROWS  # a full batch goes in one transaction
    run.log_metric("nan", float("nan"))
    run.finish()
    assert count() == FLUSH_ROWS + 1


def test_run_ids_resolve_from_a_unique_prefix(tmp_path):
    first = tracking.start_run(model="m", home=tmp_path)
    first.finish()
    store = TrackingStore(tmp_path / "tracking.db")
    assert resolve_run(store, first.id[:8]) == first.id
    with pytest.raises(InvalidInput, match="too short"):
        resolve_run(store, "ab")
    with pytest.raises(NotFound, match="no run"):
        resolve_run(store, "zzzzzzzz")

"""The pipeline as recorded stages: resume, one run per model, gates that reject, overrides, search, reproduce."""

from __future__ import annotations

import pytest

from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.home import Home
from appliance.spec import load_spec
from appliance.tracking.queries import run_detail
from appliance.training import runs
from appliance.training.pipeline import STAGES, train
from appliance.training.reproduce import reproduce
from appliance.training.run_lock import model_lock
from tests.conftest import sliced_spec

STAGE_NAMES = [s.name for s in STAGES]


def test_every_stage_of_a_run_is_recorded_with_its_outputs(trained_home):
    with Home(trained_home) as home:
        v = home.registry.version("fraud", 1)
        run = runs.pipeline_run(home.conn, v.run_id)
        detail = run_detail(home.tracking, v.run_id)
    assert STAGE_NAMES == ["ingest", "validate", "features", "train", "evaluate", "export", "gates", "register"]
    assert [s.stage for s in run.stages] == STAGE_NAMES
    assert all(s.status == "succeeded" and s.ended_at >= s.started_at and s.error is None for s in run.stages)
    outputs = {s.stage: s.outputs for s in run.stages}
    assert outputs["ingest"]["snapshots"] == run.data_snapshots
    assert outputs["export"]["onnx"] == v.artifact_sha256 == detail.artifacts["model.onnx"]
    assert outputs["register"] == {"version": 1, "status": "registered"}
    assert outputs["gates"]["report"] == v.gate_report
    assert detail.metric_points["train_binary_logloss"] == 60  # the training curve, one point per round
    assert detail.metrics["eval_auc"] == v.metrics["auc"]


def test_a_failed_run_resumes_at_the_stage_that_failed(tmp_path):
    spec = load_spec(sliced_spec(tmp_path, days=12, eval_days=3))
    users = spec.path.parent / "users.parquet"
    assert users.is_symlink()
    target = users.readlink()
    with Home(tmp_path / "home") as home:
        home.add_model(spec)  # (a spec whose entity file is missing is refused here)
        users.unlink()  # the entity file goes missing: the features stage cannot join it
        with pytest.raises(NotFound, match=r"users\.parquet does not exist"):
            train(home, spec)
        (failed,) = home.conn.execute("SELECT id FROM runs").fetchall()
        run = runs.pipeline_run(home.conn, failed[0])
        assert run.status == "failed" and run.error.startswith("stage features:")
        assert [(s.stage, s.status) for s in run.stages] == [
            ("ingest", "succeeded"),
            ("validate", "succeeded"),
            ("features", "failed"),
        ]
        ingest_started = run.stages[0].started_at
        users.symlink_to(target)  # fixed
        outcome = train(home, spec, resume=True)
        run = runs.pipeline_run(home.conn, failed[0])
        assert outcome.run_id == run.id and outcome.reused_stages == ["ingest", "validate"]
        assert run.status == "succeeded" and run.attempts == 2
        assert run.stages[0].started_at == ingest_started and run.stages[0].attempts == 1
        assert run.stages[2].attempts == 2 and [s.status for s in run.stages] == ["succeeded"] * 8
        assert home.registry.version("fraud", 1).run_id == run.id
        with pytest.raises(Conflict, match="only a failed run"):
            train(home, spec, resume=True)


def test_one_run_per_model_and_a_dead_run_does_not_block_the_next(tmp_path):
    spec = load_spec(sliced_spec(tmp_path, days=12, eval_days=3))
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        with model_lock(home.root, "fraud", "f" * 32):
            with pytest.raises(Conflict, match=r"already training \(run ffffffff in process"):
                train(home, spec)
        assert home.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        # a run whose process died: its row still says 'running', but nobody holds the lock
        runs.start_run(home.conn, "d" * 32, "fraud", "train", {}, "test")
        lines = []
        train(home, spec, say=lines.append)
        dead = runs.pipeline_run(home.conn, "d" * 32)
        assert dead.status == "failed" and "--resume" in dead.error
        assert any("dddddddd had no live worker" in line for line in lines)


def test_data_validation_stops_a_run_on_a_mostly_quarantined_batch(tmp_path):
    import polars as pl

    path = sliced_spec(tmp_path, days=12, eval_days=3)
    source = path.parent / "transactions.parquet"
    frame = pl.read_parquet(source)
    broken = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(-1.0).otherwise(pl.col("amount")).alias("amount")
    )
    broken.write_parquet(source)  # 10 % of rows break the contract's amount >= 0.01
    spec = load_spec(path)
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        with pytest.raises(InvalidInput, match=r"data validation failed: 10\.0% of the newest batch was quarantined"):
            train(home, spec)
        (row,) = home.conn.execute("SELECT id FROM runs").fetchall()
        assert [s.status for s in runs.pipeline_run(home.conn, row[0]).stages] == ["succeeded", "failed"]
        assert home.registry.versions("fraud") == []


def test_a_regression_against_production_is_rejected_and_needs_an_audited_override(tmp_path):
    path = sliced_spec(tmp_path, days=12, eval_days=3)
    with Home(tmp_path / "home") as home:
        home.add_model(load_spec(path))
        train(home, load_spec(path))
        home.registry.promote("fraud", 1)
        path.write_text(
            path.read_text()
            .replace("num_boost_round = 60", "num_boost_round = 1")
            .replace("num_leaves = 31", "num_leaves = 2")
        )
        outcome = train(home, load_spec(path))
        assert "no_regression" in [c.name for c in outcome.gates.failures()]
        assert home.registry.version("fraud", 2).status == "rejected"
        with pytest.raises(Conflict, match=r"failed its validation gates \(.*no_regression.*--override"):
            home.registry.promote("fraud", 2)
        with pytest.raises(InvalidInput, match="needs a reason"):
            home.registry.promote("fraud", 2, override=True)
        home.registry.promote("fraud", 2, actor="ana", reason="known issue, hotfix", override=True)
        assert home.registry.alias("fraud", "production") == 2
        entry = home.registry.audit_log("fraud", limit=1)[0]
        assert (entry.action, entry.actor, entry.detail["reason"]) == ("promote_override", "ana", "known issue, hotfix")
        assert "no_regression" in entry.detail["failed_gates"]


def test_random_search_trains_trials_as_child_runs_and_keeps_the_best(tmp_path):
    path = sliced_spec(
        tmp_path, days=12, eval_days=3, **{"trials = 0": "trials = 3", "validation_days = 5": "validation_days = 2"}
    )
    spec = load_spec(path)
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        outcome = train(home, spec)
        detail = run_detail(home.tracking, outcome.run_id)
        trials = {c.name: run_detail(home.tracking, c.id) for c in detail.child_runs}
    assert sorted(trials) == ["trial-1", "trial-2", "trial-3"]
    scores = {name: t.metrics["validation_auc"] for name, t in trials.items()}
    best = max(scores, key=scores.get)
    assert detail.tags["best_trial"] == best
    assert outcome.version.params == {**trials[best].params, "seed": 7, "trainer": "lightgbm"}
    assert len({t.params["learning_rate"] for t in trials.values()}) == 3  # really different draws


def test_reproducing_a_lightgbm_version_gives_identical_bytes_and_metrics(trained_home, tmp_path):
    import shutil

    shutil.copytree(trained_home, tmp_path / "home")
    with Home(tmp_path / "home") as home:
        result = reproduce(home, "fraud", 1)
        assert result.identical and result.max_difference == 0.0
        assert {m.name for m in result.metrics} >= {"auc", "f1", "log_loss"}
        assert run_detail(home.tracking, result.run_id).tags["reproduces"] == "fraud v1"
        assert home.registry.versions("fraud")[-1].version == 2  # nothing registered

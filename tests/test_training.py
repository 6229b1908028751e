"""Training pipeline on the sample data: time split, metrics, ONNX parity, gates, lineage."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from appliance.data.snapshots import list_snapshots
from appliance.errors import Conflict
from appliance.home import Home
from appliance.scoring import onnx_model
from appliance.spec import load_spec
from appliance.training import onnx_export
from appliance.training.lightgbm_trainer import float32_thresholds, native_predict
from appliance.training.pipeline import train
from tests.conftest import small_spec


def test_trained_version_carries_metrics_lineage_and_a_verified_artifact(trained_home):
    with Home(trained_home) as home:
        v = home.registry.version("fraud", 1)
        assert v.status == "registered"
        assert {"auc", "precision", "recall", "f1", "log_loss"} <= v.metrics.keys()
        assert 0.8 < v.metrics["auc"] < 1.0
        assert v.gate_report["passed"] is True
        parity = next(c for c in v.gate_report["checks"] if c["name"] == "onnx_parity")
        assert parity["value"] <= 1e-5
        snapshots = list_snapshots(home.conn, "fraud")
        assert len(snapshots) == 1 and snapshots[0].rows > 100_000
        run = home.conn.execute("SELECT * FROM runs WHERE id = ?", (v.run_id,)).fetchone()
        assert run["status"] == "succeeded"
        assert snapshots[0].hash in run["data_snapshots_json"]
        assert home.artifacts.get(v.artifact_sha256)[:4]  # hash-verified read
        # same data, same seed: the second version is the same model
        assert home.registry.version("fraud", 2).artifact_sha256 == v.artifact_sha256
        assert home.registry.version("fraud", 2).data_version == v.data_version


def test_evaluation_days_come_after_training_days(tmp_path):
    spec = load_spec(small_spec(tmp_path))
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        outcome = train(home, spec)
    assert outcome.cutoff.startswith("2026-10-06")  # 45 days of history, last 10 held out
    assert outcome.train_rows > 3 * outcome.eval_rows > 0


def test_a_version_below_the_quality_gate_is_kept_but_rejected(tmp_path):
    spec = load_spec(small_spec(tmp_path, **{"min_auc = 0.80": "min_auc = 0.999"}))
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        outcome = train(home, spec)
        assert not outcome.gates.passed
        assert [c.name for c in outcome.gates.failures()] == ["min_auc"]
        assert home.registry.version("fraud", 1).status == "rejected"
        with pytest.raises(Conflict):
            home.registry.promote("fraud", 1)


def test_float32_thresholds_keep_every_decision_and_give_onnx_parity():
    rng = np.random.default_rng(0)
    x = np.round(rng.lognormal(3, 1, (20_000, 3)), 2).astype(np.float32)  # cents: many near-ties
    y = (x[:, 0] + rng.normal(0, 5, len(x)) > 25).astype(int)
    raw = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 63, "seed": 1}, lgb.Dataset(x, y), num_boost_round=100
    )
    snapped = float32_thresholds(raw)
    np.testing.assert_array_equal(native_predict(raw, x), native_predict(snapped, x))
    sess = onnx_model.session(onnx_export.lightgbm_to_onnx(snapped), ["CPUExecutionProvider"])
    assert onnx_model.parity(sess, native_predict(snapped, x), x) <= 1e-5

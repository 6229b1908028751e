"""The PyTorch MLP: defined answers for bad inputs, ONNX parity, checkpoints, and a SIGKILL'd run resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from appliance.features.encoding import FeatureColumn, FeatureSchema
from appliance.home import Home
from appliance.layout import Layout
from appliance.scoring import onnx_model
from appliance.scoring.metrics import roc_auc
from appliance.spec import load_spec
from appliance.tracking.queries import metric_series
from appliance.training.mlp_trainer import load_mlp, train_mlp
from appliance.training.pipeline import train
from tests.conftest import interrupted_and_resumed, mlp_spec

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = FeatureSchema(
    [
        FeatureColumn("amount", "float"),
        FeatureColumn("kind", "category", ["a", "b", "c"]),
        FeatureColumn("young", "boolean"),
    ]
)
# The resumed run must end within this AUC of an uninterrupted one (it is built to be identical).
RESUME_TOLERANCE = 1e-3


def toy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.lognormal(3, 1, n), rng.integers(0, 3, n), rng.integers(0, 2, n)]).astype(np.float32)
    y = ((np.log(x[:, 0]) > 3.5) ^ (x[:, 1] == 2) ^ (rng.random(n) < 0.1)).astype(np.int8)
    return x, y


def test_mlp_learns_exports_with_a_dynamic_batch_and_keeps_parity():
    x, y = toy(4_000)
    model = train_mlp(SCHEMA, x, y, {"epochs": 5, "hidden": 16}, seed=1)
    p = model.predict(x)
    assert roc_auc(y, p) > 0.8
    sess = onnx_model.session(model.to_onnx(), ["CPUExecutionProvider"])
    assert onnx_model.parity(sess, p, x) <= 1e-5
    assert onnx_model.predict_proba(sess, x[:1]).shape == (1,)  # one row and many: the batch is dynamic
    assert np.array_equal(load_mlp(model.to_bytes()).predict(x), p)


def test_mlp_gives_a_probability_for_missing_out_of_range_and_unseen_inputs():
    x, y = toy(2_000)
    model = train_mlp(SCHEMA, x, y, {"epochs": 1, "hidden": 8}, seed=1)
    odd = np.array(
        [[np.nan, np.nan, np.nan], [3e38, 99, -5], [-np.inf, -1, np.inf], [np.inf, 2.5, 1]], dtype=np.float32
    )
    for p in (model.predict(odd), onnx_model.predict_proba(onnx_model.session(model.to_onnx()), odd)):
        assert np.isfinite(p).all() and ((0 <= p) & (p <= 1)).all()


def test_an_interrupted_fit_resumes_from_its_checkpoint_to_the_same_model(tmp_path):
    x, y = toy(3_000)
    params = {"epochs": 4, "hidden": 16}
    whole = train_mlp(SCHEMA, x, y, params, seed=3)
    resumed, epochs_seen = interrupted_and_resumed(
        partial(train_mlp, SCHEMA, x, y, params, seed=3), crash_in_epoch=2, checkpoint=tmp_path / "final.pt"
    )
    assert epochs_seen == [2, 3]  # epochs 0 and 1 came from the checkpoint
    np.testing.assert_array_equal(resumed.predict(x), whole.predict(x))


def test_a_training_worker_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path):
    spec_path, home_dir, cli, first, run_id, worker = _train_until_first_checkpoint(tmp_path)
    os.kill(worker, signal.SIGKILL)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 1 and "was killed by SIGKILL" in err and "--resume" in err, (out, err)

    resumed = subprocess.run([*cli, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "ingest: reused" in resumed.stdout and "features: reused" in resumed.stdout
    with Home(home_dir) as home:
        run = home.conn.execute("SELECT status, attempts FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert tuple(run) == ("succeeded", 2)
        curve = metric_series(home.tracking, run_id, "train_loss")
        killed_auc = home.registry.version("fraud", 1).metrics["auc"]
    steps = [step for step, _ in curve]
    assert steps.count(0) == 1 and sorted(set(steps)) == list(range(4))  # epoch 0 ran once: resumed, not restarted

    with Home(tmp_path / "uninterrupted") as home:
        spec = load_spec(spec_path)
        home.add_model(spec)
        uninterrupted_auc = train(home, spec).version.metrics["auc"]
    assert abs(killed_auc - uninterrupted_auc) <= RESUME_TOLERANCE, (killed_auc, uninterrupted_auc)


def test_sigterm_makes_a_training_worker_checkpoint_and_stop_resumably(tmp_path):
    _, home_dir, cli, first, run_id, worker = _train_until_first_checkpoint(tmp_path)
    os.kill(worker, signal.SIGTERM)  # what systemd sends every process of the service on stop
    out, err = first.communicate(timeout=120)
    assert first.returncode == 1 and "stopped by SIGTERM" in err and "--resume" in err, (out, err)
    assert (Layout(home_dir).run_checkpoints(run_id) / "final.pt").exists()
    resumed = subprocess.run([*cli, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with Home(home_dir) as home:
        run = home.conn.execute("SELECT status, attempts FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert tuple(run) == ("succeeded", 2)
        steps = [step for step, _ in metric_series(home.tracking, run_id, "train_loss")]
    assert sorted(steps) == list(range(4))  # every epoch exactly once: stopped at a boundary, resumed after it


def _train_until_first_checkpoint(tmp_path: Path):
    """`appliance train` of the MLP spec as a subprocess, returned once its worker saved a checkpoint."""
    spec_path = mlp_spec(tmp_path)
    home_dir = tmp_path / "home"
    with Home(home_dir) as home:
        home.add_model(load_spec(spec_path))
    cli = [sys.executable, "-m", "appliance", "--home", str(home_dir), "train", "fraud"]
    first = subprocess.Popen(cli, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id, worker = _wait_for_checkpoint(home_dir, first)
    return spec_path, home_dir, cli, first, run_id, worker


def _wait_for_checkpoint(home_dir: Path, proc: subprocess.Popen) -> tuple[str, int]:
    """The running run and its worker's pid, once the worker has saved a checkpoint."""
    import sqlite3

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        checkpoints = list(Layout(home_dir).checkpoints.glob("*/final.pt"))
        if checkpoints:
            with sqlite3.connect(Layout(home_dir).metadata_db) as conn:
                run_id, pid = conn.execute("SELECT id, worker_pid FROM runs WHERE status = 'running'").fetchone()
            assert checkpoints[0].parent.name == run_id and pid != proc.pid
            return run_id, pid
        time.sleep(0.02)
    raise AssertionError("no checkpoint within 120 s")


def test_the_int8_variant_is_quantized_stored_and_measured(tmp_path):
    import onnx

    from appliance.training.quantize import int8_variant
    from storage.artifacts import ArtifactStore

    x, y = toy(3_000)
    model = train_mlp(SCHEMA, x, y, {"epochs": 3, "hidden": 32}, seed=1)
    store = ArtifactStore(tmp_path)
    variant = int8_variant(model.to_onnx(), x, y, put=store.put)
    ops = {n.op_type for n in onnx.load_from_string(store.get(variant.onnx_sha256)).graph.node}
    assert "DynamicQuantizeLinear" in ops  # weights are INT8, activations quantized per call
    float_auc = roc_auc(y, model.predict(x))
    assert variant.metric == "auc"
    assert variant.delta == pytest.approx(variant.value - float_auc, abs=1e-6) and abs(variant.delta) < 0.05
    assert variant.p99_ms_int8 > 0
    assert variant.latency_gain == pytest.approx(variant.p99_ms_float32 / variant.p99_ms_int8)

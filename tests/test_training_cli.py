"""`appliance train` in a worker, `runs list|show|compare`, `reproduce`, `promote --override`, by subprocess."""

from __future__ import annotations

import re

from appliance.training.run_lock import model_lock
from tests.test_cli import appliance


def test_runs_list_show_and_compare(home_dir):
    listed = appliance(home_dir, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    ids = re.findall(r"^([0-9a-f]{8})\s+fraud\s+pipeline\s+train\s+succeeded", listed.stdout, re.M)
    assert len(ids) == 2, listed.stdout
    shown = appliance(home_dir, "runs", "show", ids[0])
    assert shown.returncode == 0, shown.stderr
    for stage in ("ingest", "validate", "features", "train", "evaluate", "export", "gates", "register"):
        assert re.search(rf"^{stage}\s+succeeded", shown.stdout, re.M), stage
    assert re.search(r"train_binary_logloss\s+[\d.]+\s+60$", shown.stdout, re.M)  # a curve of 60 points
    assert "model.onnx" in shown.stdout and "lightgbm 4." in shown.stdout
    compared = appliance(home_dir, "runs", "compare", *ids)
    assert re.search(r"param num_boost_round\s+60\s+60", compared.stdout)
    assert re.search(r"metric eval_auc\s+0\.\d+\s+0\.\d+", compared.stdout)
    unknown = appliance(home_dir, "runs", "show", "ffffffff")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no run with id")


def test_reproduce_in_a_fresh_process_gives_the_same_bytes(home_dir):
    result = appliance(home_dir, "reproduce", "fraud", "1")
    assert result.returncode == 0, result.stderr
    assert "fraud v1: identical — same ONNX bytes" in result.stdout
    assert re.search(r"^auc\s+0\.\d+\s+0\.\d+\s+\+0$", result.stdout, re.M)


def test_train_refuses_while_another_run_holds_the_model(home_dir):
    with model_lock(home_dir, "fraud", "a" * 32):
        result = appliance(home_dir, "train", "fraud")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: model 'fraud' is already training (run aaaaaaaa in process")


def test_override_needs_a_reason(home_dir):
    result = appliance(home_dir, "promote", "fraud", "2", "--override")
    assert result.returncode == 1 and "needs a reason" in result.stderr

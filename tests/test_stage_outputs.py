"""Typed stage outputs: each stage's Struct reads the rows metadata.db already holds and writes them back as they
were, and a row that no longer fits stops a resume with what to do instead."""

from __future__ import annotations

import json

import msgspec
import pytest

from appliance.errors import Conflict
from appliance.home import Home
from appliance.spec import load_spec
from appliance.training import runs
from appliance.training.pipeline import STAGES, train
from appliance.training.quantize import QuantizedVariant
from appliance.training.search import Trial
from appliance.training.stages import ExportOutputs, GatesOutputs, IngestOutputs, TrainOutputs
from appliance.validation.gates import GateReport
from tests.conftest import small_spec

OUTPUTS = {s.name: s.outputs for s in STAGES}
SNAPSHOT = "d85f5496e01e5fde597ad2b6bf552fc6f2256bc9f51b30dafc28c4d31d9d001c"
FEEDBACK = "5e0f8a61c2f3a1c29e1b7b1f0a4f4c8e9d2f6b3a7c1e5d9f0b2a4c6e8f1a3b5d"
TRIAL = {
    "num_boost_round": 60,
    "learning_rate": 0.042156326601089,
    "num_leaves": 63,
    "min_child_samples": 47,
    "feature_fraction": 0.9,
}
GATES = {
    "report": {
        "passed": True,
        "checks": [
            {
                "name": "min_auc",
                "passed": True,
                "value": 0.8717124138710042,
                "threshold": 0.8,
                "detail": "evaluation AUC 0.8717 ≥ 0.8",
                "applicable": True,
            },
            {
                "name": "no_regression",
                "passed": True,
                "value": 0.0,
                "threshold": 0.02,
                "detail": "no production version to compare with",
                "applicable": True,
            },
        ],
    },
    "evidence": {
        "value": 0.8717124138710042,
        "parity_diff": 1.825436835023453e-07,
        "p99_ms": 0.009848019526543794,
        "robustness_probes": 99,
        "robustness_failures": [],
        "task": "binary",
        "metric": "auc",
        "recall_at_precision": 0.1794871794871795,
        "baseline_value": 0.5,
        "segments": {"country": {"AU": {"rows": 388, "positives": 16, "value": 0.9020497311827957}}},
        "production_version": None,
        "production_value": None,
    },
}

INGESTED = {
    "snapshot": SNAPSHOT,
    "new_snapshot": True,
    "rows_read": 37060,
    "accepted": 37060,
    "quarantined": 0,
    "snapshots": [SNAPSHOT],
}
# Rows as the stages wrote them before their outputs were typed (a search, a quantized variant, a retrain's
# feedback with and without a batch): the shapes users' metadata.db holds.
RECORDED = [
    ("ingest", INGESTED),
    ("ingest", {**INGESTED, "new_snapshot": False, "feedback": {"accepted": 0}}),
    (
        "ingest",
        {
            **INGESTED,
            "new_snapshot": False,
            "snapshots": [SNAPSHOT, FEEDBACK],
            "feedback": {"snapshot": FEEDBACK, "rows_read": 41, "accepted": 40, "quarantined": 1},
        },
    ),
    (
        "validate",
        {
            "rows": 37060,
            "quarantined_share": 0.0,
            "missing_share": {"amount": 0.0, "merchant_category": 0.0, "hour": 0.0, "is_foreign": 0.0},
        },
    ),
    (
        "features",
        {
            "training_set": SNAPSHOT,
            "rows": 37060,
            "train_rows": 31229,
            "eval_rows": 5831,
            "cutoff": "2026-09-11T00:00:00+00:00",
        },
    ),
    (
        "train",
        {
            "trainer": "lightgbm",
            "model": SNAPSHOT,
            "params": {**TRIAL, "seed": 7, "trainer": "lightgbm"},
            "threads": 1,
            "device": "cpu",
        },
    ),
    (
        "train",
        {
            "search": {
                "best": "trial-1",
                "trials": [
                    {
                        "name": "trial-1",
                        "run_id": "784d9ee12694436f90baddfce0d84fc5",
                        "params": TRIAL,
                        "validation_score": 0.8835042636038813,
                    }
                ],
            },
            "trainer": "lightgbm",
            "model": SNAPSHOT,
            "params": {**TRIAL, "seed": 7, "trainer": "lightgbm"},
            "threads": 1,
            "device": "cpu",
        },
    ),
    (
        "evaluate",
        {
            "metrics": {
                "auc": 0.8717124138710042,
                "log_loss": 0.07944267576131694,
                "rows": 5831.0,
                "recall_at_precision": 0.1794871794871795,
            }
        },
    ),
    ("export", {"onnx": SNAPSHOT, "parity": 1.825436835023453e-07, "int8": None}),
    (
        "export",
        {
            "onnx": SNAPSHOT,
            "parity": 1.825436835023453e-07,
            "int8": {
                "onnx_sha256": FEEDBACK,
                "metric": "auc",
                "value": 0.871715802552807,
                "delta": 0.0,
                "p99_ms_float32": 0.010305578798579516,
                "p99_ms_int8": 0.012671570148086174,
                "latency_gain": 0.8132834903759736,
            },
        },
    ),
    ("gates", GATES),
    ("register", {"version": 1, "status": "registered"}),
]


@pytest.mark.parametrize("stage, recorded", RECORDED, ids=[f"{s}-{i}" for i, (s, _) in enumerate(RECORDED)])
def test_a_row_recorded_before_the_outputs_were_typed_converts_and_records_the_same_json(stage, recorded):
    outputs = msgspec.convert(json.loads(json.dumps(recorded)), OUTPUTS[stage])
    assert json.dumps(msgspec.to_builtins(outputs)) == json.dumps(recorded)  # the same keys, in the same order


def test_the_nested_pieces_are_their_own_types():
    ingest = msgspec.convert(RECORDED[2][1], IngestOutputs)
    assert ingest.feedback is not None and (ingest.feedback.accepted, ingest.feedback.quarantined) == (40, 1)
    assert msgspec.convert(RECORDED[1][1], IngestOutputs).feedback.snapshot is None  # no batch came back
    trained = msgspec.convert(RECORDED[6][1], TrainOutputs)
    assert isinstance(trained.search.trials[0], Trial) and trained.search.trials[0].run_id.startswith("784d9ee1")
    assert isinstance(msgspec.convert(RECORDED[9][1], ExportOutputs).int8, QuantizedVariant)
    gates = msgspec.convert(GATES, GatesOutputs)
    assert isinstance(gates.report, GateReport) and gates.evidence.segments["country"]["AU"].positives == 16


def test_every_stage_of_a_trained_run_records_the_json_of_its_struct(trained_home):
    with Home(trained_home) as home:
        run_id = home.registry.version("fraud", 1).run_id
        rows = home.conn.execute(
            "SELECT stage, outputs_json FROM run_stages WHERE run_id = ? ORDER BY position", (run_id,)
        ).fetchall()
    assert [stage for stage, _ in rows] == list(OUTPUTS)
    for stage, text in rows:
        assert json.dumps(msgspec.to_builtins(msgspec.convert(json.loads(text), OUTPUTS[stage]))) == text, stage


def test_a_run_whose_recorded_outputs_no_longer_fit_cannot_resume_and_stays_as_it_was(tmp_path):
    spec = load_spec(small_spec(tmp_path))
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        run_id = "a" * 32
        runs.start_run(home.conn, run_id, "fraud", "train", {}, "test")
        for position, (stage, outputs) in enumerate(
            (("ingest", RECORDED[0][1]), ("gates", {**GATES, "evidence": {"auc": 0.87}}))
        ):
            runs.start_stage(home.conn, run_id, stage, position)
            runs.finish_stage(home.conn, run_id, stage, status="succeeded", outputs=outputs)
        runs.start_stage(home.conn, run_id, "register", 7)
        runs.finish_stage(home.conn, run_id, "register", status="failed", error="OSError: disk full")
        runs.finish_run(home.conn, run_id, status="failed", error="stage register: OSError: disk full")
        with pytest.raises(
            Conflict,
            match=r"run aaaaaaaa of 'fraud' cannot resume: the recorded outputs of its "
            r"stage gates do not fit .*`value`.*start a new one with `appliance "
            r"train fraud`",
        ):
            train(home, spec, resume=True)
        run = runs.pipeline_run(home.conn, run_id)
    assert (run.status, run.attempts) == ("failed", 1)

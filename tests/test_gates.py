"""Validation gates: the rules on hand-made evidence, and the probes on real ONNX models."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import onnx
from onnx import TensorProto, helper

from appliance.features.encoding import FeatureColumn, FeatureSchema
from appliance.home import Home
from appliance.spec import ValidationSection
from appliance.validation.gates import GateEvidence, evaluate_gates
from appliance.validation.probes import (
    SegmentScore,
    recall_at_precision,
    robustness_failures,
    segment_scores,
    single_row_p99_ms,
)

RULES = ValidationSection(
    min_auc=0.8,
    min_recall=0.3,
    recall_at_precision=0.8,
    max_regression=0.02,
    max_segment_gap=0.10,
    segment_min_positives=30,
    max_p99_ms=10.0,
)


def evidence(**changes) -> GateEvidence:
    base = GateEvidence(
        value=0.89, recall_at_precision=0.4, parity_diff=1e-7, p99_ms=0.1, robustness_probes=43, robustness_failures=[]
    )
    return msgspec.structs.replace(base, **changes)


def failed(report) -> list[str]:
    return [c.name for c in report.failures()]


def test_every_gate_passes_on_good_evidence_and_each_fails_on_its_own():
    assert evaluate_gates(RULES, evidence()).passed
    assert failed(evaluate_gates(RULES, evidence(value=0.79))) == ["min_auc"]
    assert failed(evaluate_gates(RULES, evidence(value=math.nan))) == ["min_auc"]
    assert failed(evaluate_gates(RULES, evidence(recall_at_precision=0.29))) == ["min_recall"]
    assert failed(evaluate_gates(RULES, evidence(parity_diff=2e-5))) == ["onnx_parity"]
    assert failed(evaluate_gates(RULES, evidence(p99_ms=10.5))) == ["latency_p99"]
    report = evaluate_gates(RULES, evidence(robustness_failures=["amount = inf: answered nan"]))
    assert failed(report) == ["robustness"] and "amount = inf" in report.checks[-1].detail


def test_regression_is_judged_against_production_on_the_same_rows():
    assert failed(evaluate_gates(RULES, evidence(value=0.89, production_version=3, production_value=0.905))) == []
    report = evaluate_gates(RULES, evidence(value=0.88, production_version=3, production_value=0.905))
    assert failed(report) == ["no_regression"] and "production v3" in report.checks[2].detail
    assert failed(evaluate_gates(RULES, evidence(production_version=3, production_value=math.nan))) == ["no_regression"]


def test_a_first_version_is_judged_by_the_specs_own_thresholds_only():
    modest = msgspec.structs.replace(RULES, min_auc=0.70, min_recall=0.10)  # a spec written for a 0.71 model
    report = evaluate_gates(modest, evidence(value=0.71, recall_at_precision=0.12))
    assert report.passed and "no production version" in report.checks[2].detail
    assert failed(evaluate_gates(RULES, evidence(value=0.71, recall_at_precision=0.12))) == ["min_auc", "min_recall"]
    later = evidence(value=0.71, recall_at_precision=0.12, production_version=1, production_value=0.74)
    assert failed(evaluate_gates(modest, later)) == ["no_regression"]  # once one serves, it is the bar too


def test_segment_gap_judges_only_segments_with_enough_positives():
    scores = {
        "US": SegmentScore(10_000, 300, 0.89),
        "GB": SegmentScore(3_000, 100, 0.83),
        "JP": SegmentScore(2_000, 19, 0.60),
    }  # too few positives: reported, not judged
    report = evaluate_gates(RULES, evidence(segments={"country": scores}))
    check = next(c for c in report.checks if c.name == "segment_gap_country")
    assert check.passed and check.value == np.float64(0.89 - 0.83) and "JP" in check.detail
    scores["GB"] = SegmentScore(3_000, 100, 0.78)
    assert failed(evaluate_gates(RULES, evidence(segments={"country": scores}))) == ["segment_gap_country"]


def test_recall_at_precision_matches_a_brute_force_sweep_over_thresholds():
    rng = np.random.default_rng(3)
    y = rng.random(3_000) < 0.1
    p = np.round(np.clip(y * 0.3 + rng.random(3_000) * 0.8, 0, 1), 2)  # rounded: many ties
    best = 0.0
    for t in np.unique(p):
        flagged = p >= t
        if (y & flagged).sum() / flagged.sum() >= 0.6:
            best = max(best, (y & flagged).sum() / y.sum())
    assert recall_at_precision(y, p, 0.6) == best > 0
    assert recall_at_precision(y, p, 1.01) == 0.0


def test_segment_scores_give_missing_values_their_own_segment():
    scores = segment_scores(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2]), ["US", "US", None, None])
    assert set(scores) == {"US", "(missing)"} and scores["US"] == SegmentScore(2, 1, 1.0)


def test_robustness_and_latency_probes_on_the_registered_model(trained_home):
    with Home(trained_home) as home:
        v = home.registry.version("fraud", 1)
        data = home.artifacts.get(v.artifact_sha256)
    schema = msgspec.convert(v.feature_schema, FeatureSchema)
    # an ordinary row: small numbers everywhere, the first category of each categorical feature
    typical = np.array([[0.0 if c.categories else 3.0 for c in schema.columns]], dtype=np.float32)
    probes, failures = robustness_failures(data, schema, typical[0])
    assert probes == 1 + len(schema.columns) * 7 and failures == []
    assert 0 < single_row_p99_ms(data, typical, calls=60)


def test_robustness_probes_catch_a_model_that_answers_nan():
    # probability = x * 1 (no clipping): NaN in, NaN out; huge in, "probability" above 1 out
    graph = helper.make_graph(
        [helper.make_node("Concat", ["features", "features"], ["probabilities"], axis=1)],
        "passthrough",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    probes, failures = robustness_failures(
        model.SerializeToString(), FeatureSchema([FeatureColumn("x", "float")]), np.array([0.5], dtype=np.float32)
    )
    assert probes == 8
    assert "all features missing: answered nan" in failures[0] and any("x = 1e+06" in f for f in failures)
    assert onnx.load_from_string(model.SerializeToString())  # a real, valid model

"""Metrics, probes and gates for every task: equal to scikit-learn's on random and tie-heavy inputs, real ONNX
models for the probes, and each gate passing and failing per task."""

from __future__ import annotations

import json
import math
import warnings

import msgspec
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn import metrics as sk

from appliance.errors import InvalidInput
from appliance.features.encoding import FeatureColumn, FeatureSchema
from appliance.scoring.metrics import (
    baseline_score,
    binary_metrics,
    evaluate,
    quartile_bins,
    regression_metrics,
    score,
)
from appliance.spec import ValidationSection
from appliance.task import METRICS, Task
from appliance.validation.gates import GateEvidence, GateReport, evaluate_gates
from appliance.validation.probes import (
    SegmentScore,
    robustness_failures,
    segment_scores,
    single_row_p99_ms,
)

TICKETS = Task("multiclass", ("billing", "tech", "sales", "legal"))
PRICES = Task("regression", ())


# -- multiclass metrics against scikit-learn -------------------------------------------------------


def random_multiclass(seed: int, k: int, n: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]  # informative, far from perfect
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


def tie_heavy_multiclass(seed: int, n: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    """Four classes, every row one of a few probability vectors: equal maxima (argmax takes the first),
    equal columns, a certain zero, and whole rows alike."""
    rng = np.random.default_rng(seed)
    vectors = np.array(
        [
            [0.25, 0.25, 0.25, 0.25],
            [0.4, 0.4, 0.1, 0.1],
            [0.1, 0.4, 0.4, 0.1],
            [0.0, 0.5, 0.0, 0.5],
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.1, 0.1, 0.7],
        ]
    )
    p = vectors[rng.integers(0, len(vectors), n)]
    y = np.where(rng.random(n) < 0.5, np.argmax(p, axis=1), rng.integers(0, 4, n))
    return y, p


def assert_equal_to_sklearn(y: np.ndarray, p: np.ndarray, task: Task) -> None:
    k, labels = len(task.classes), list(range(len(task.classes)))
    m = evaluate(task, y, p)
    predicted = np.argmax(p, axis=1)  # the first highest probability, as the appliance predicts
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, predicted, average="macro"), abs=1e-12)
    assert m["weighted_f1"] == pytest.approx(sk.f1_score(y, predicted, average="weighted"), abs=1e-12)
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p, labels=labels), abs=1e-12)
    assert m["auc"] == pytest.approx(
        sk.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels), abs=1e-12
    )
    precision = sk.precision_score(y, predicted, labels=labels, average=None, zero_division=0)
    recall = sk.recall_score(y, predicted, labels=labels, average=None, zero_division=0)
    matrix = sk.confusion_matrix(y, predicted, labels=labels)
    for i, name in enumerate(task.class_text()):
        assert m[f"precision.{name}"] == pytest.approx(precision[i], abs=1e-12)
        assert m[f"recall.{name}"] == pytest.approx(recall[i], abs=1e-12)
        assert m[f"share.{name}"] == pytest.approx(np.mean(y == i), abs=1e-12)
        assert m[f"predicted_share.{name}"] == pytest.approx(np.mean(predicted == i), abs=1e-12)
        for j, other in enumerate(task.class_text()):
            assert m[f"confusion.{name}.{other}"] == matrix[i, j]
    assert m["rows"] == len(y) and all(isinstance(v, float) for v in m.values())
    assert len(m) == 6 + 4 * k + k * k
    for metric in (*METRICS["multiclass"], "auc"):  # one metric alone is the same number
        assert score(task, metric, y, p) == m[metric]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multiclass_metrics_equal_sklearn_on_random_inputs(seed):
    k = 3 + seed % 3
    task = Task("multiclass", tuple(f"c{i}" for i in range(k)))
    assert_equal_to_sklearn(*random_multiclass(seed, k), task)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multiclass_metrics_equal_sklearn_on_tie_heavy_inputs(seed):
    y, p = tie_heavy_multiclass(seed)
    assert_equal_to_sklearn(y, p, TICKETS)
    # the tied rows [0.4, 0.4, …] go to the first class, as numpy's argmax and the served answer pick
    assert TICKETS.answer(np.array([0.4, 0.4, 0.1, 0.1]))["class"] == "billing"


def test_integer_classes_are_keyed_by_their_text_and_float32_output_is_clipped_as_sklearn_clips():
    task = Task("multiclass", (0, 1, 2))
    y, p = random_multiclass(5, 3, n=500)
    p = p.astype(np.float32)
    p[0] = [1.0, 0.0, 0.0]
    y[0] = 1  # certain and wrong: clipped at float32's eps, not infinite
    m = evaluate(task, y, p)
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p, labels=[0, 1, 2]), rel=1e-6)
    assert {"precision.0", "recall.2", "confusion.1.0", "share.2", "predicted_share.0"} <= m.keys()


def test_a_class_absent_from_the_rows_is_left_out_of_macro_f1_and_auc_but_keeps_its_keys():
    y, p = random_multiclass(7, 4)
    keep = y != 3  # class 3 never true …
    y, p = y[keep], p[keep]
    p[:, 3] = 0.0  # … and never predicted
    p /= p.sum(axis=1, keepdims=True)
    m = evaluate(TICKETS, y, p)
    predicted = np.argmax(p, axis=1)
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, predicted, average="macro"), abs=1e-12)
    ovr = [sk.roc_auc_score(y == c, p[:, c]) for c in range(3)]
    assert m["auc"] == pytest.approx(np.mean(ovr), abs=1e-12)
    assert m["precision.legal"] == m["recall.legal"] == m["share.legal"] == 0.0


def test_a_single_class_present_gives_nan_auc_and_real_counts():
    y = np.zeros(50, dtype=int)
    p = np.tile([0.6, 0.2, 0.1, 0.1], (50, 1))
    m = evaluate(TICKETS, y, p)
    assert math.isnan(m["auc"]) and m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["confusion.billing.billing"] == 50.0 and m["share.billing"] == 1.0


# -- regression metrics against scikit-learn -------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_regression_metrics_equal_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.lognormal(3, 1, 2_000)
    yhat = y * rng.normal(1, 0.2, 2_000) + rng.normal(0, 5, 2_000)
    if ties:  # whole minutes: many equal targets and predictions, ties at the quartile edges
        y, yhat = np.round(y / 10), np.round(yhat / 10)
    m = evaluate(PRICES, y, yhat.astype(np.float32).reshape(-1, 1) if ties else yhat)  # ONNX's [N, 1] too
    yhat = yhat.astype(np.float32).astype(np.float64) if ties else yhat
    assert m["rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(y, yhat)), abs=1e-12)
    assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, yhat), abs=1e-12)
    assert m["r2"] == pytest.approx(sk.r2_score(y, yhat), abs=1e-12)
    assert m["mean_target"] == pytest.approx(y.mean()) and m["mean_prediction"] == pytest.approx(yhat.mean())
    bins = quartile_bins(y)
    for q in range(4):
        part = bins == q
        expected = sk.mean_absolute_error(y[part], yhat[part]) if part.any() else math.nan
        assert m[f"mae.q{q + 1}"] == pytest.approx(expected, abs=1e-12, nan_ok=True)
    for metric in METRICS["regression"]:
        assert score(PRICES, metric, y, yhat) == pytest.approx(m[metric], abs=1e-12)


def test_quartiles_of_the_target_put_a_value_on_an_edge_in_the_lower_quartile():
    y = np.arange(1.0, 9.0)  # edges 2.75, 4.5, 6.25
    yhat = y + np.array([1, -1, 2, 2, 0, 0, -3, 1])
    m = regression_metrics(y, yhat)
    assert [m[f"mae.q{q}"] for q in (1, 2, 3, 4)] == [1.0, 2.0, 0.0, 2.0]
    assert [m[f"bias.q{q}"] for q in (1, 2, 3, 4)] == [0.0, 2.0, 0.0, -1.0]
    # six zeros: every edge but the last is 0, and the tied zeros all fall in q1; q2 and q3 are empty
    assert list(quartile_bins(np.array([0, 0, 0, 0, 0, 0, 1, 2.0]))) == [0, 0, 0, 0, 0, 0, 3, 3]
    m = regression_metrics(np.array([0, 0, 0, 0, 0, 0, 1, 2.0]), np.zeros(8))
    assert m["mae.q1"] == 0.0 and m["mae.q4"] == 1.5 and math.isnan(m["mae.q2"]) and math.isnan(m["bias.q3"])


def test_r2_of_a_constant_target_is_nan_where_sklearn_says_zero():
    y = np.full(20, 7.0)
    assert math.isnan(evaluate(PRICES, y, y + 1)["r2"]) and sk.r2_score(y, y + 1) == 0.0
    assert evaluate(PRICES, y, y + 1)["rmse"] == 1.0


# -- edge cases and refusals -----------------------------------------------------------------------


@pytest.mark.parametrize("task", [TICKETS, PRICES])
def test_empty_rows_give_nan_metrics_without_warnings(task):
    output = np.zeros((0, 4)) if task.kind == "multiclass" else np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = evaluate(task, np.zeros(0), output)
    assert m["rows"] == 0.0 and math.isnan(m[task.metric])
    assert all(math.isnan(v) or v == 0.0 for v in m.values())


def test_binary_evaluate_is_todays_binary_metrics():
    rng = np.random.default_rng(4)
    y = (rng.random(1_000) < 0.2).astype(int)
    p = np.clip(rng.random(1_000) * 0.6 + y * 0.3, 0, 1)
    task = Task(threshold=0.4)
    assert evaluate(task, y, p) == binary_metrics(y, p, 0.4)
    for metric in METRICS["binary"]:
        assert score(task, metric, y, p) == binary_metrics(y, p, 0.4)[metric]


def test_a_nan_output_is_refused_by_evaluate_and_scores_nan():
    y, p = random_multiclass(1, 4, n=100)
    p[[3, 9, 50]] = np.nan
    with pytest.raises(InvalidInput, match="NaN or infinite for 3 of 100 rows"):
        evaluate(TICKETS, y, p)
    assert math.isnan(score(TICKETS, "macro_f1", y, p))
    with pytest.raises(InvalidInput, match="for 1 of 3 rows"):
        evaluate(PRICES, np.ones(3), np.array([1.0, np.inf, 2.0]))
    with pytest.raises(InvalidInput, match="for 1 of 2 rows"):
        evaluate(Task(), np.array([0, 1]), np.array([0.2, np.nan]))
    assert math.isnan(score(Task(), "auc", np.array([0, 1]), np.array([0.2, np.nan])))


def test_bad_labels_shapes_and_metric_names_are_one_clear_error():
    y, p = random_multiclass(1, 4, n=10)
    with pytest.raises(InvalidInput, match="2 of 10 rows have a label outside the classes"):
        evaluate(TICKETS, np.r_[y[:8], -1, 4], p)
    with pytest.raises(InvalidInput, match=r"shape \(10, 4\), not \(10, 3\)"):
        evaluate(TICKETS, y, p[:, :3])
    with pytest.raises(InvalidInput, match="no finite target value"):
        evaluate(PRICES, np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(InvalidInput, match="no metric 'rmse'; choose one of accuracy, auc"):
        score(TICKETS, "rmse", y, p)


def test_a_model_that_knows_nothing_scores_the_majority_share_or_the_mean():
    y = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 3])
    assert baseline_score(TICKETS, "accuracy", y) == 0.4
    shares = np.bincount(y) / len(y)
    assert baseline_score(TICKETS, "log_loss", y) == pytest.approx(-np.sum(shares * np.log(shares)))
    assert baseline_score(TICKETS, "macro_f1", y) == pytest.approx(sk.f1_score(y, np.full(10, 3), average="macro"))
    training = np.array([1, 1, 1, 0])  # the training rows' shares: class 'tech' every time
    assert baseline_score(TICKETS, "accuracy", y, reference=training) == 0.3
    rng = np.random.default_rng(0)
    values = rng.normal(50, 10, 500)
    assert baseline_score(PRICES, "r2", values) == pytest.approx(0.0, abs=1e-12)
    assert baseline_score(PRICES, "rmse", values) == pytest.approx(values.std(), rel=1e-12)
    assert baseline_score(Task(), "auc", (values > 55).astype(int)) == 0.5
    assert math.isnan(baseline_score(PRICES, "rmse", np.zeros(0)))


# -- probes ----------------------------------------------------------------------------------------


def test_segment_scores_measure_the_tasks_metric_and_count_positives_only_for_binary():
    y, p = random_multiclass(2, 4, n=400)
    country = np.where(np.arange(400) % 4 == 0, "GB", "US").astype(object)
    country[:5] = None
    scores = segment_scores(y, p, list(country), TICKETS)
    mask = np.array([c == "GB" for c in country])
    assert set(scores) == {"GB", "US", "(missing)"}
    assert scores["GB"] == SegmentScore(int(mask.sum()), 0, score(TICKETS, "macro_f1", y[mask], p[mask]))
    assert scores["GB"].value == pytest.approx(sk.f1_score(y[mask], np.argmax(p[mask], axis=1), average="macro"))
    values = np.arange(8.0)
    by_zone = segment_scores(values, values + [1, 1, 1, 1, 2, 2, 2, 2], ["a"] * 4 + ["b"] * 4, PRICES, "mae")
    assert by_zone == {"a": SegmentScore(4, 0, 1.0), "b": SegmentScore(4, 0, 2.0)}
    binary = segment_scores(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2]), ["US", "US", None, None])
    assert binary["US"] == SegmentScore(2, 1, 1.0)


def onnx_model(outputs: str, k: int, normalize: bool = True, clean: bool = True) -> bytes:
    """A real ONNX model over 2 features. ``clean`` replaces NaN by 0 and clips to ±10 first (as a tree's
    thresholds make any input finite); classifiers end in a softmax, or a sigmoid per class that sums to
    anything (``normalize=False``); regression is a linear value [N, 1]."""
    rng = np.random.default_rng(0)
    nodes, x = [], "features"
    inits = [
        numpy_helper.from_array(np.zeros((1, 2), np.float32), "zero"),
        numpy_helper.from_array(np.array(-10, np.float32), "low"),
        numpy_helper.from_array(np.array(10, np.float32), "high"),
        numpy_helper.from_array(rng.normal(size=(2, k)).astype(np.float32), "weights"),
    ]
    if clean:
        nodes += [
            helper.make_node("IsNaN", [x], ["nan"]),
            helper.make_node("Where", ["nan", "zero", x], ["filled"]),
            helper.make_node("Clip", ["filled", "low", "high"], ["clean"]),
        ]
        x = "clean"
    nodes.append(helper.make_node("MatMul", [x, "weights"], ["logits"]))
    if outputs == "value":
        nodes.append(helper.make_node("Identity", ["logits"], ["value"]))
    else:
        nodes.append(
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)
            if normalize
            else helper.make_node("Sigmoid", ["logits"], ["probabilities"])
        )
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info(outputs, TensorProto.FLOAT, [None, k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


SCHEMA = FeatureSchema([FeatureColumn("distance", "float"), FeatureColumn("items", "float")])
TYPICAL = np.array([2.0, 3.0], dtype=np.float32)


def test_robustness_accepts_valid_answers_of_each_task_and_names_the_bad_ones():
    assert robustness_failures(onnx_model("probabilities", 4), SCHEMA, TYPICAL, TICKETS) == (15, [])
    assert robustness_failures(onnx_model("value", 1), SCHEMA, TYPICAL, PRICES) == (15, [])
    probes, failures = robustness_failures(onnx_model("probabilities", 4, normalize=False), SCHEMA, TYPICAL, TICKETS)
    assert probes == 15 and len(failures) == 15 and "summing to" in failures[0]
    _, failures = robustness_failures(onnx_model("value", 1, clean=False), SCHEMA, TYPICAL, PRICES)
    assert "all features missing: answered nan" in failures and any("distance = inf: answered" in f for f in failures)
    # three classes declared, four answered: a wrong shape, not an exception
    _, failures = robustness_failures(onnx_model("probabilities", 4), SCHEMA, TYPICAL, Task("multiclass", (0, 1, 2)))
    assert failures and "not (1, 3)" in failures[0]
    # a regression model's output read as a classifier's is an error the gate reports, not a crash
    _, failures = robustness_failures(onnx_model("value", 1), SCHEMA, TYPICAL, TICKETS)
    assert len(failures) == 15 and failures[0].startswith("all features missing: ") and "answered" not in failures[0]


def test_single_row_latency_works_for_every_task_with_or_without_it():
    x = np.tile(TYPICAL, (20, 1))
    for task, outputs, k in ((TICKETS, "probabilities", 4), (PRICES, "value", 1)):
        data = onnx_model(outputs, k)
        assert 0 < single_row_p99_ms(data, x, calls=60, task=task) < 1_000
        assert 0 < single_row_p99_ms(data, x, calls=60) < 1_000


# -- gates per task --------------------------------------------------------------------------------

RULES = ValidationSection(max_regression=0.02, max_segment_gap=0.10, segment_min_positives=30, max_p99_ms=10.0)


def evidence(task: str, metric: str, **changes) -> GateEvidence:
    base = GateEvidence(
        task=task,
        metric=metric,
        value=0.6,
        baseline_value=0.3,
        parity_diff=1e-7,
        p99_ms=0.1,
        robustness_probes=15,
        robustness_failures=[],
    )
    return msgspec.structs.replace(base, **changes)


def names(report: GateReport) -> list[str]:
    return [c.name for c in report.checks]


def failed(report: GateReport) -> list[str]:
    return [c.name for c in report.failures()]


def check(report: GateReport, name: str):
    return next(c for c in report.checks if c.name == name)


def test_an_old_binary_report_has_the_same_gates_as_before():
    # the gates stage's evidence as a run recorded before tasks stored it (a resumed run reads it back): no task
    stored = b'{"value": 0.7, "recall_at_precision": 0.1, "parity_diff": 1e-7, "p99_ms": 0.1, "robustness_probes": 8, '
    stored += b'"robustness_failures": []}'
    report = evaluate_gates(ValidationSection(), msgspec.json.decode(stored, type=GateEvidence))
    assert names(report) == ["min_auc", "min_recall", "no_regression", "onnx_parity", "latency_p99", "robustness"]
    assert report.passed and check(report, "min_auc").detail == "evaluation AUC 0.7000 ≥ 0.6"
    # a binary model judged by F1 has no AUC bound but must beat always answering the positive rate
    f1 = evidence("binary", "f1", value=0.5, baseline_value=0.0, recall_at_precision=0.1)
    assert names(evaluate_gates(RULES, f1))[:2] == ["beats_baseline", "min_recall"]
    assert failed(evaluate_gates(RULES, msgspec.structs.replace(f1, value=0.0))) == ["beats_baseline"]


def test_multiclass_gates_judge_the_chosen_metric_and_the_baseline():
    report = evaluate_gates(RULES, evidence("multiclass", "macro_f1"))
    assert report.passed
    assert names(report) == ["beats_baseline", "no_regression", "onnx_parity", "latency_p99", "robustness"]
    assert check(report, "beats_baseline").detail.startswith(
        "macro F1 0.6000 beats 0.3000 of a model that answers the class shares"
    )
    assert "every answer a probability per class, summing to 1" in check(report, "robustness").detail
    assert failed(evaluate_gates(RULES, evidence("multiclass", "macro_f1", value=0.3))) == ["beats_baseline"]
    assert failed(evaluate_gates(RULES, evidence("multiclass", "macro_f1", value=math.nan))) == ["beats_baseline"]
    bounded = msgspec.structs.replace(RULES, min_metric=0.65)
    report = evaluate_gates(bounded, evidence("multiclass", "macro_f1"))
    assert (
        failed(report) == ["min_macro_f1"]
        and check(report, "min_macro_f1").detail == "evaluation macro F1 0.6000 < 0.65"
    )
    # log loss: lower is better, for the bound, the baseline and the regression
    loss = evidence("multiclass", "log_loss", value=0.5, baseline_value=1.2)
    capped = msgspec.structs.replace(RULES, max_metric=0.45)
    assert failed(evaluate_gates(capped, loss)) == ["max_log_loss"]
    assert failed(evaluate_gates(RULES, msgspec.structs.replace(loss, value=1.3))) == ["beats_baseline"]
    worse = msgspec.structs.replace(loss, production_version=2, production_value=0.47)
    assert failed(evaluate_gates(RULES, worse)) == ["no_regression"]
    assert "worse by 0.0300 > 0.02" in check(evaluate_gates(RULES, worse), "no_regression").detail
    assert evaluate_gates(RULES, msgspec.structs.replace(worse, production_value=0.49)).passed
    assert evaluate_gates(RULES, msgspec.structs.replace(worse, production_value=0.60)).passed  # better


def test_a_baseline_not_measured_or_undefined_is_reported_not_judged():
    report = evaluate_gates(RULES, evidence("multiclass", "macro_f1", baseline_value=None))
    gate = check(report, "beats_baseline")
    assert report.passed and not gate.applicable and "not measured" in gate.detail
    gate = check(evaluate_gates(RULES, evidence("regression", "r2", baseline_value=math.nan)), "beats_baseline")
    assert not gate.applicable and "undefined" in gate.detail


def test_regression_rmse_is_judged_lower_is_better_and_relative_to_production():
    rmse = evidence("regression", "rmse", value=10.0, baseline_value=12.0)
    assert evaluate_gates(RULES, rmse).passed
    assert failed(evaluate_gates(RULES, msgspec.structs.replace(rmse, value=12.5))) == ["beats_baseline"]
    assert failed(evaluate_gates(msgspec.structs.replace(RULES, max_metric=9.5), rmse)) == ["max_rmse"]
    assert failed(evaluate_gates(msgspec.structs.replace(RULES, min_metric=10.5), rmse)) == ["min_rmse"]
    # 10 against production's 9.85: 1.5 % worse (an absolute reading, 0.15, would fail the 0.02 allowance)
    near = msgspec.structs.replace(rmse, production_version=4, production_value=9.85)
    gate = check(evaluate_gates(RULES, near), "no_regression")
    assert gate.passed and gate.value == pytest.approx(0.15 / 9.85) and "worse by 1.523% ≤ 2%" in gate.detail
    far = msgspec.structs.replace(rmse, production_version=4, production_value=9.7)
    assert failed(evaluate_gates(RULES, far)) == ["no_regression"]
    better = check(evaluate_gates(RULES, msgspec.structs.replace(far, production_value=11.0)), "no_regression")
    assert better.passed and better.value < 0 and "better by" in better.detail
    perfect = msgspec.structs.replace(far, production_value=0.0)  # production was exact: any error is worse
    assert failed(evaluate_gates(RULES, perfect)) == ["no_regression"]
    assert failed(evaluate_gates(RULES, msgspec.structs.replace(far, production_value=math.nan))) == ["no_regression"]
    # R² is higher-is-better and not scaled: judged as an absolute drop
    r2 = evidence("regression", "r2", value=0.70, baseline_value=0.0, production_version=4, production_value=0.71)
    assert evaluate_gates(RULES, r2).passed
    assert failed(evaluate_gates(RULES, msgspec.structs.replace(r2, production_value=0.73))) == ["no_regression"]
    assert failed(evaluate_gates(RULES, msgspec.structs.replace(r2, value=-0.1, production_value=None))) == [
        "beats_baseline"
    ]


def test_segment_gap_is_relative_for_scaled_metrics_and_counts_rows_for_other_tasks():
    segments = {
        "zone": {
            "north": SegmentScore(400, 0, 9.0),
            "south": SegmentScore(300, 0, 10.5),
            "harbour": SegmentScore(29, 0, 30.0),
        }
    }  # too few rows: reported, not judged
    rmse = evidence("regression", "rmse", value=10.0, baseline_value=12.0, segments=segments)
    gate = check(evaluate_gates(RULES, rmse), "segment_gap_zone")
    assert not gate.passed and gate.value == pytest.approx(0.15)
    assert gate.detail.startswith("RMSE by zone: south 10.5 … north 9, gap 1.5 = 15% of the overall 10 > 10%")
    assert "too few rows to judge: harbour" in gate.detail
    assert check(evaluate_gates(RULES, msgspec.structs.replace(rmse, value=20.0)), "segment_gap_zone").passed
    f1 = {"country": {"GB": SegmentScore(100, 0, 0.62), "US": SegmentScore(900, 0, 0.70)}}
    gate = check(evaluate_gates(RULES, evidence("multiclass", "macro_f1", segments=f1)), "segment_gap_country")
    assert gate.passed and gate.value == pytest.approx(0.08) and gate.detail.startswith("macro F1 by country: GB")
    f1["country"]["GB"] = SegmentScore(100, 0, 0.55)
    assert failed(evaluate_gates(RULES, evidence("multiclass", "macro_f1", segments=f1))) == ["segment_gap_country"]
    small = {"country": {"GB": SegmentScore(29, 0, 0.1), "US": SegmentScore(900, 0, 0.70)}}
    gate = check(evaluate_gates(RULES, evidence("multiclass", "macro_f1", segments=small)), "segment_gap_country")
    assert gate.passed and "fewer than two country segments with ≥ 30 rows" in gate.detail


def test_regression_parity_is_judged_on_the_relative_gap_and_classifiers_absolutely():
    # onnx_model.parity gives a regression's gap relative to the values' root mean square
    prices = evidence("regression", "rmse", value=10.0, baseline_value=12.0, parity_diff=5e-6)
    gate = check(evaluate_gates(RULES, prices), "onnx_parity")
    assert gate.passed and gate.value == pytest.approx(5e-6) and "root mean square" in gate.detail
    assert failed(evaluate_gates(RULES, msgspec.structs.replace(prices, parity_diff=5e-5))) == ["onnx_parity"]
    assert failed(evaluate_gates(RULES, evidence("multiclass", "macro_f1", parity_diff=2e-5))) == ["onnx_parity"]
    outside = check(evaluate_gates(RULES, msgspec.structs.replace(prices, parity_diff=None)), "onnx_parity")
    assert not outside.applicable and outside.passed


def test_latency_and_robustness_fail_for_every_task():
    for task, metric in (("multiclass", "accuracy"), ("regression", "mae")):
        e = evidence(
            task,
            metric,
            value=0.6 if task == "multiclass" else 1.0,
            baseline_value=0.3 if task == "multiclass" else 2.0,
        )
        assert evaluate_gates(RULES, e).passed
        assert failed(evaluate_gates(RULES, msgspec.structs.replace(e, p99_ms=11.0))) == ["latency_p99"]
        bad = evaluate_gates(RULES, msgspec.structs.replace(e, robustness_failures=["x missing: answered nan"]))
        assert failed(bad) == ["robustness"] and "x missing: answered nan" in bad.checks[-1].detail


def test_a_report_survives_the_registrys_json():
    e = evidence(
        "regression",
        "rmse",
        value=10.0,
        baseline_value=12.0,
        production_version=1,
        production_value=9.9,
        segments={"zone": {"a": SegmentScore(40, 0, 9.0), "b": SegmentScore(40, 0, 11)}},
    )
    report = evaluate_gates(RULES, e)
    assert msgspec.convert(json.loads(json.dumps(msgspec.to_builtins(report))), GateReport) == report
    assert msgspec.convert(json.loads(json.dumps(msgspec.to_builtins(e))), GateEvidence) == e

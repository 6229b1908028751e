"""Monitoring of multiclass and regression models: prediction drift, realized performance per window and
segment, performance estimated without labels (NannyML's CBPE and DLE, run here beside our own call on the
same frames), the monitor job over a real prediction log, and the alert rules that watch each task's metric."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from appliance.alerts.rules import evaluate
from appliance.layout import Layout
from appliance.monitoring.estimation import estimate_performance, nannyml_strings
from appliance.monitoring.monitor import LABEL, with_performance_limit
from appliance.monitoring.performance import task_performance_by_window
from appliance.monitoring.prediction_drift import task_prediction_drift_by_window
from appliance.monitoring.reference import (
    PREDICTED,
    SCORE,
    output_columns,
    proba_columns,
    reference_bytes,
    reference_metrics,
    with_task_labels,
)
from appliance.monitoring.report import monitor_report
from appliance.monitoring.store import RESULT_SCHEMA
from appliance.monitoring.windows import EventWindows
from appliance.scoring.metrics import evaluate as evaluate_metrics
from appliance.spec import Feature, load_spec
from appliance.spec.alerts import DEFAULT_ALERTS, AlertRule, proportion_standard_error, task_alerts
from appliance.spec.monitoring import MonitoringSection
from appliance.task import Task
from tests.conftest import register_metrics
from tests.monitoring_rows import result

DAY0 = datetime(2026, 7, 1, tzinfo=UTC)
CLASSES = ("billing", "tech", "sales", "abuse")
MULTICLASS = Task("multiclass", CLASSES)
REGRESSION = Task("regression", ())
RULES = MonitoringSection(min_window_rows=100)
FEATURES = [Feature("x", "float"), Feature("channel", "category"), Feature("rush", "boolean")]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def timed(rng: np.random.Generator, n: int, first_day: int, days: int) -> list[datetime]:
    seconds = np.sort(rng.integers(0, days * 86400, n))
    return [DAY0 + timedelta(days=first_day, seconds=int(s)) for s in seconds]


def inputs(rng: np.random.Generator, n: int, first_day: int, days: int, x_shift: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_time": timed(rng, n, first_day, days),
            "x": rng.normal(x_shift, 1.0, n),
            "channel": rng.choice(["email", "chat", "phone"], n),
            "rush": rng.random(n) < 0.3,
        }
    )


def multiclass_rows(
    rng: np.random.Generator, n: int, first_day: int, days: int, x_shift: float = 0.0, swapped: bool = False
) -> tuple[pl.DataFrame, np.ndarray]:
    """Rows with their true class index and a decent, imperfect model's probabilities (as the reference stores
    them); ``swapped``: billing and tech trade places, so the model is wrong on both."""
    frame = inputs(rng, n, first_day, days, x_shift)
    x, channel = frame["x"].to_numpy(), frame["channel"].to_numpy()
    logits = np.stack([1.6 * x, -1.6 * x, 1.5 * (channel == "phone") - 0.3, np.full(n, -1.0)], axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(softmax(logits), axis=1)).sum(axis=1)
    if swapped:
        y = np.where(y == 0, 1, np.where(y == 1, 0, y))
    p = softmax(logits + rng.normal(0, 0.4, logits.shape))
    return frame.with_columns(output_columns(MULTICLASS, p)), y


def regression_rows(
    rng: np.random.Generator, n: int, first_day: int, days: int, x_shift: float = 0.0, slower: float = 1.0
) -> tuple[pl.DataFrame, np.ndarray]:
    """Rows with their true value and a model's prediction of it; ``slower`` scales the truth, not the model."""
    frame = inputs(rng, n, first_day, days, x_shift)
    x, channel, rush = frame["x"].to_numpy(), frame["channel"].to_numpy(), frame["rush"].to_numpy()
    expected = 30 + 6 * x + 8 * (channel == "phone") + 5 * rush
    y = (expected + rng.normal(0, 3 + 2 * rush, n)) * slower  # noisier in a rush: DLE has an error to learn
    return frame.with_columns(output_columns(REGRESSION, expected + rng.normal(0, 1, n))), y


def with_feedback(frame: pl.DataFrame, y: np.ndarray, missing_every: int = 7) -> pl.DataFrame:
    """The frame as the monitor reads the log: the label as the task reads it, some not arrived yet."""
    dtype = pl.Float64 if y.dtype.kind == "f" else pl.Int64
    arrived = np.arange(len(y)) % missing_every != 0
    return frame.with_columns(
        pl.Series(LABEL, np.where(arrived, y, 0), dtype=dtype).scatter(np.flatnonzero(~arrived), None)
    )


def reference_and_live(
    rows, seed: int, labelled: Callable[[np.ndarray], pl.Series], **last_day
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Three reference days, with the data's own labels (``labelled``), and three live days as the monitor reads
    them: one like the reference, one whose inputs drifted, and one that ``rows`` changes by ``last_day``."""
    rng = np.random.default_rng(seed)
    reference, y_ref = rows(rng, 6000, 0, 3)
    days = [rows(rng, 1500, 3, 1), rows(rng, 1500, 4, 1, x_shift=1.0), rows(rng, 1500, 5, 1, **last_day)]
    return reference.with_columns(labelled(y_ref)), pl.concat([with_feedback(f, y) for f, y in days])


@pytest.fixture(scope="module")
def multiclass_frames():
    return reference_and_live(multiclass_rows, 3, lambda y: pl.Series("team", [CLASSES[i] for i in y]), swapped=True)


@pytest.fixture(scope="module")
def regression_frames():
    return reference_and_live(regression_rows, 4, lambda y: pl.Series("minutes", y), slower=2.0)


def labelled_days(live: pl.DataFrame, windows: EventWindows):
    labelled = live.with_columns(_w=pl.Series(windows.code)).filter(pl.col(LABEL).is_not_null())
    return [labelled.filter(pl.col("_w") == i) for i in range(windows.count)]


# -- multiclass ------------------------------------------------------------------------------------


def test_multiclass_reference_stores_each_class_and_reads_its_own_labels(multiclass_frames, tmp_path: Path):
    from tests.task_data import write_tickets

    spec = load_spec(write_tickets(tmp_path / "tickets"))
    reference, _ = multiclass_frames
    p = reference.select(proba_columns(MULTICLASS)).to_numpy()
    rows = reference.rename({"event_time": "opened", "x": "words"})
    stored = pl.read_parquet(io.BytesIO(reference_bytes(spec, rows, p, MULTICLASS)))
    assert stored.columns == ["opened", "words", "channel", "team", SCORE, PREDICTED, *proba_columns(MULTICLASS)]
    assert stored["team"].to_list() == reference["team"].to_list()  # the labels as the data has them
    assert stored[PREDICTED].to_list() == np.argmax(p, axis=1).tolist()
    assert np.allclose(stored[SCORE].to_numpy(), p.max(axis=1))
    codes = with_task_labels(stored, "team", MULTICLASS)["team"].to_numpy()
    expected = evaluate_metrics(MULTICLASS, codes, p)
    metrics = reference_metrics(stored, "team", MULTICLASS)
    assert metrics["macro_f1"] == expected["macro_f1"] and metrics["share.abuse"] == expected["share.abuse"]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(codes, np.argmax(p, axis=1)), abs=1e-12)


def test_an_old_binary_reference_with_scores_alone_still_reads():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    old = pl.DataFrame({"is_fraud": labels, SCORE: np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)})
    metrics = reference_metrics(old, "is_fraud", Task())
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, old[SCORE]), abs=1e-12)
    assert with_task_labels(old, "is_fraud", Task()).equals(old)


def test_multiclass_realized_metrics_per_window_and_segment_equal_scikit_learns(multiclass_frames):
    reference, live = multiclass_frames
    windows = EventWindows(live, "event_time", "1d")
    limits = with_performance_limit(RULES, reference_metrics(reference, "team", MULTICLASS), MULTICLASS, "macro_f1")
    out = task_performance_by_window(live, windows, LABEL, MULTICLASS, "macro_f1", limits, segment="channel")
    assert set(out["method"]) == {"accuracy", "macro_f1", "weighted_f1"}
    for i, day in enumerate(labelled_days(live, windows)):
        for feature, part in [("*", day), *((f"channel={c}", day.filter(channel=c)) for c in ("chat", "phone"))]:
            y, chosen = part[LABEL].to_numpy(), part[PREDICTED].to_numpy()
            got = {
                r["method"]: r
                for r in out.filter(feature=feature)
                .sort("window_start")
                .filter(pl.col("window_start") == windows.starts[i])
                .iter_rows(named=True)
            }
            assert got["accuracy"]["value"] == pytest.approx(accuracy_score(y, chosen), abs=1e-12)
            assert got["macro_f1"]["value"] == pytest.approx(f1_score(y, chosen, average="macro"), abs=1e-12)
            assert got["weighted_f1"]["value"] == pytest.approx(f1_score(y, chosen, average="weighted"), abs=1e-12)
            assert got["macro_f1"]["rows"] == part.height
    overall = out.filter(feature="*", method="macro_f1").sort("window_start")
    floor = reference_metrics(reference, "team", MULTICLASS)["macro_f1"] - 0.10
    assert overall["threshold"].to_list() == pytest.approx([floor] * 3)
    assert overall["alert"].to_list() == [False, False, True]  # billing and tech swapped on day 3
    assert not out.filter(method="accuracy")["alert"].any()  # only the judging metric alerts


def equal_to_nannymls(ours: pl.DataFrame, method: str, theirs: pd.DataFrame, metric: str) -> pl.DataFrame:
    """Our estimate of ``method`` and its bounds, window by window, after checking they are NannyML's of ``metric``."""
    got = ours.filter(method=method).sort("window_start")
    for column, part in (
        ("estimated", "value"),
        ("lower", "lower_confidence_boundary"),
        ("upper", "upper_confidence_boundary"),
    ):
        assert np.allclose(got[column].to_numpy(), theirs[(metric, part)].to_numpy(dtype=float), atol=1e-9, rtol=0)
    return got


def test_multiclass_estimate_equals_nannymls_cbpe_on_the_same_frames(multiclass_frames):
    import nannyml

    reference, live = multiclass_frames
    windows = EventWindows(live, "event_time", "1d")
    ref = with_task_labels(reference.rename({"team": LABEL}), LABEL, MULTICLASS)
    limits = with_performance_limit(RULES, reference_metrics(reference, "team", MULTICLASS), MULTICLASS, "macro_f1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = estimate_performance(ref, live, windows, "event_time", LABEL, MULTICLASS, "macro_f1", FEATURES, limits)
        unlabelled = estimate_performance(
            ref, live.drop(LABEL), windows, "event_time", LABEL, MULTICLASS, "macro_f1", FEATURES, limits
        )
        # NannyML by itself: the class probabilities keyed by class, daily chunks of the raw event times.
        columns = dict(enumerate(proba_columns(MULTICLASS)))

        def frame(f: pl.DataFrame, extra: list[str]) -> pd.DataFrame:
            return f.select(
                pl.col("event_time").dt.replace_time_zone(None), *columns.values(), PREDICTED, *extra
            ).to_pandas()

        cbpe = nannyml.CBPE(
            y_pred_proba=columns,
            y_pred=PREDICTED,
            y_true=LABEL,
            timestamp_column_name="event_time",
            metrics=["accuracy", "f1"],
            chunk_period="D",
            problem_type="classification_multiclass",
        )
        theirs = cbpe.fit(frame(ref, [LABEL])).estimate(frame(live, [])).filter(period="analysis").to_df()
    for method, name in (("accuracy", "accuracy"), ("macro_f1", "f1")):
        got = equal_to_nannymls(ours, method, theirs, name)
        assert unlabelled.filter(method=method)["estimated"].to_list() == got["estimated"].to_list()
        assert unlabelled["realized"].null_count() == unlabelled.height
        assert ((got["lower"] < got["estimated"]) & (got["estimated"] < got["upper"])).all()
    realized = ours.filter(method="accuracy").sort("window_start")["realized"].to_list()
    for value, day in zip(realized, labelled_days(live, windows)):
        assert value == pytest.approx(accuracy_score(day[LABEL], day[PREDICTED]), abs=1e-12)
    # CBPE reads only the probabilities: it cannot see labels that swapped, so the realized value leaves its band.
    last = ours.filter(method="accuracy").sort("window_start").row(2, named=True)
    assert last["realized"] < last["lower"]
    judged = ours.filter(method="macro_f1")
    assert judged["threshold"].drop_nulls().len() == 3 and ours.filter(method="accuracy")["threshold"].null_count() == 3


def test_multiclass_prediction_drift_follows_the_chosen_classes(multiclass_frames):
    reference, live = multiclass_frames
    windows = EventWindows(live, "event_time", "1d")
    out = task_prediction_drift_by_window(reference, live, MULTICLASS, windows, RULES)
    assert set(out["feature"]) == {"prediction"}

    def by_day(method: str, column: str = "value") -> list:
        return out.filter(method=method).sort("window_start")[column].to_list()

    assert by_day("psi", "alert") == [False, True, False]  # x moved on day 2: tech is chosen less
    counts = np.bincount(live[PREDICTED].to_numpy()[windows.code == 1], minlength=4)
    reference_share = np.mean(reference[PREDICTED].to_numpy() == 1)
    assert by_day("predicted_rate.tech")[1] == pytest.approx(counts[1] / counts.sum(), abs=1e-12)
    assert by_day("predicted_rate_change.tech")[1] == pytest.approx(
        abs(counts[1] / counts.sum() - reference_share), abs=1e-12
    )
    assert by_day("predicted_rate_change.tech", "alert") == [False, True, False]
    assert by_day("probability_psi.billing", "alert") == [False, True, False]
    assert not out.filter(pl.col("window_start") == windows.starts[0])["alert"].any()


# -- regression ------------------------------------------------------------------------------------


def test_regression_realized_metrics_per_window_and_segment_equal_scikit_learns(regression_frames):
    reference, live = regression_frames
    windows = EventWindows(live, "event_time", "1d")
    reference_rmse = reference_metrics(reference, "minutes", REGRESSION)["rmse"]
    limits = with_performance_limit(RULES, reference_metrics(reference, "minutes", REGRESSION), REGRESSION, "rmse")
    assert limits.performance.metric_limit == pytest.approx(reference_rmse * 1.25)
    out = task_performance_by_window(live, windows, LABEL, REGRESSION, "rmse", limits, segment="channel")
    for i, day in enumerate(labelled_days(live, windows)):
        for feature, part in (("*", day), ("channel=phone", day.filter(channel="phone"))):
            y, yhat = part[LABEL].to_numpy(), part[SCORE].to_numpy()
            got = {
                r["method"]: r["value"]
                for r in out.filter(feature=feature)
                .filter(pl.col("window_start") == windows.starts[i])
                .iter_rows(named=True)
            }
            assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, yhat)), abs=1e-9)
            assert got["mae"] == pytest.approx(mean_absolute_error(y, yhat), abs=1e-9)
            assert got["r2"] == pytest.approx(r2_score(y, yhat), abs=1e-9)
    rmse = out.filter(feature="*", method="rmse").sort("window_start")
    assert rmse["alert"].to_list() == [False, False, True]  # the truth doubled on day 3
    assert rmse["value"][2] > 2 * reference_rmse


def test_regression_labels_are_values_not_truncated():
    frame = pl.DataFrame({"y": [12.75, 3.5, None]})
    assert with_task_labels(frame, "y", REGRESSION)["y"].to_list() == [12.75, 3.5, None]


def test_regression_estimate_equals_nannymls_dle_on_the_same_frames(regression_frames):
    import nannyml

    reference, live = regression_frames
    windows = EventWindows(live, "event_time", "1d")
    ref = reference.rename({"minutes": LABEL})
    limits = with_performance_limit(RULES, reference_metrics(reference, "minutes", REGRESSION), REGRESSION, "rmse")
    names = [f.name for f in FEATURES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = estimate_performance(ref, live, windows, "event_time", LABEL, REGRESSION, "rmse", FEATURES, limits)

        def frame(f: pl.DataFrame, extra: list[str]) -> pd.DataFrame:  # categories and booleans as they come
            return f.select(pl.col("event_time").dt.replace_time_zone(None), *names, SCORE, *extra).to_pandas()

        dle = nannyml.DLE(
            feature_column_names=names,
            y_pred=SCORE,
            y_true=LABEL,
            timestamp_column_name="event_time",
            chunk_period="D",
            metrics=["rmse", "mae"],
        )
        with nannyml_strings():  # NannyML 0.13 cannot encode categories under pandas 3's own string type
            theirs = dle.fit(frame(ref, [LABEL])).estimate(frame(live, [])).filter(period="analysis").to_df()
    for method in ("rmse", "mae"):
        got = equal_to_nannymls(ours, method, theirs, method)
        assert ((got["lower"] < got["estimated"]) & (got["estimated"] < got["upper"])).all()
    rmse = ours.filter(method="rmse").sort("window_start")
    for value, day in zip(rmse["realized"], labelled_days(live, windows)):
        assert value == pytest.approx(np.sqrt(mean_squared_error(day[LABEL], day[SCORE])), abs=1e-9)
    # DLE reads the inputs and predictions alone: a truth that doubled without them moving is beyond it.
    assert rmse["realized"][2] > rmse["upper"][2] and rmse["realized"][0] < rmse["upper"][0]
    assert rmse["threshold"].to_list() == pytest.approx([limits.performance.metric_limit] * 3)
    assert ours.filter(method="mae")["threshold"].null_count() == 3


def test_rows_the_model_did_not_answer_are_left_out_of_estimates(regression_frames):
    reference, live = regression_frames
    windows = EventWindows(live, "event_time", "1d")
    ref = reference.rename({"minutes": LABEL})
    failed = live.with_columns(
        pl.when(pl.Series(windows.code == 1)).then(None).otherwise(pl.col(SCORE)).alias(SCORE)
    )  # day 2: every request failed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = estimate_performance(ref, live, windows, "event_time", LABEL, REGRESSION, "rmse", FEATURES, RULES)
        out = estimate_performance(ref, failed, windows, "event_time", LABEL, REGRESSION, "rmse", FEATURES, RULES)
        none = estimate_performance(
            ref,
            live.with_columns(pl.lit(None, pl.Float64).alias(SCORE)),
            windows,
            "event_time",
            LABEL,
            REGRESSION,
            "rmse",
            FEATURES,
            RULES,
        )
    rmse, expected = out.filter(method="rmse").sort("window_start"), whole.filter(method="rmse").sort("window_start")
    assert rmse["estimated"][1] is None and rmse["realized"][1] is None
    assert [rmse["estimated"][i] for i in (0, 2)] == pytest.approx([expected["estimated"][i] for i in (0, 2)], abs=1e-9)
    assert none["estimated"].null_count() == none.height and not none["alert"].any()


def test_regression_prediction_drift_is_the_values_psi_and_mean_shift(regression_frames):
    reference, live = regression_frames
    windows = EventWindows(live, "event_time", "1d")
    out = task_prediction_drift_by_window(reference, live, REGRESSION, windows, RULES)
    psi = out.filter(method="psi").sort("window_start")
    assert psi["alert"].to_list() == [False, True, False]  # inputs moved on day 2: so did the value
    shift = out.filter(method="mean_shift").sort("window_start")
    values = reference[SCORE].to_numpy()
    day2 = live.filter(pl.Series(windows.code == 1))[SCORE].to_numpy()
    assert shift["value"][1] == pytest.approx(abs(day2.mean() - values.mean()) / values.std(ddof=1), abs=1e-9)
    assert shift["alert"].to_list() == [False, True, False]
    assert out.filter(method="mean").sort("window_start")["value"][1] == pytest.approx(day2.mean(), abs=1e-9)


# -- alert rules -----------------------------------------------------------------------------------


def results(*rows: tuple) -> pl.DataFrame:
    """Result rows: (day, check, method, value, rows) of the whole model, served by v1."""
    day = timedelta(days=1)
    return pl.DataFrame(
        [
            {"model": "m", **result(1, DAY0 + d * day, day, check, "*", method, value, rows=n)}
            for d, check, method, value, n in rows
        ],
        schema=RESULT_SCHEMA,
    )


def fired(rules: list[AlertRule], rows: pl.DataFrame, reference: dict) -> list[str]:
    return [f.rule.name for rule in rules for f in evaluate(rule, rows, {1: reference})]


def test_a_binary_models_rules_are_the_defaults_unchanged():
    assert task_alerts(DEFAULT_ALERTS, "binary", "auc") == DEFAULT_ALERTS
    assert task_alerts(DEFAULT_ALERTS, "binary", "f1") == DEFAULT_ALERTS


def test_regression_accuracy_rules_watch_rmse_as_a_share_of_the_reference():
    rules = task_alerts(DEFAULT_ALERTS, "regression", "rmse")
    low, critical = (next(r for r in rules if r.name == n) for n in ("accuracy-low", "accuracy-critical"))
    assert (low.method, low.op, low.threshold, low.fallback_method) == ("rmse", ">", 0.25, "rmse")
    assert (critical.action, critical.threshold, critical.noise_z) == ("retrain", 0.50, 0.0)
    reference = {"rmse": 4.0}
    assert fired(rules, results((0, "performance", "rmse", 4.8, 1000)), reference) == []  # 20 % worse
    assert fired(rules, results((0, "performance", "rmse", 5.5, 1000)), reference) == ["accuracy-low"]
    doubled = results((0, "performance", "rmse", 8.0, 1000))
    assert fired(rules, doubled, reference) == ["accuracy-low", "accuracy-critical"]
    [firing] = evaluate(critical, doubled, {1: reference})
    assert firing.threshold == pytest.approx(6.0)
    assert firing.message == (
        "realized rmse 8.000 is 4.000 above v1's reference 4.000 (more than 2.000, 50% of it: critical)"
    )
    estimated = results((0, "estimated", "rmse", 8.0, 1000))  # no labels yet: DLE's estimate
    assert fired(rules, estimated, reference) == ["accuracy-low", "accuracy-critical"]
    r2 = task_alerts(DEFAULT_ALERTS, "regression", "r2")
    assert fired(r2, results((0, "performance", "r2", 0.70, 1000)), {"r2": 0.85}) == [
        "accuracy-low",
        "accuracy-critical",
    ]
    assert next(r for r in r2 if r.name == "accuracy-low").fallback_check is None  # DLE does not estimate R²


def test_multiclass_accuracy_rules_widen_with_the_windows_noise():
    rules = task_alerts(DEFAULT_ALERTS, "multiclass", "accuracy")
    low = next(r for r in rules if r.name == "accuracy-low")
    assert (low.method, low.op, low.noise_z, low.fallback_method) == ("accuracy", "<", 3.0, "accuracy")
    reference = {"accuracy": 0.80}
    assert fired(rules, results((0, "performance", "accuracy", 0.78, 3000)), reference) == []
    assert fired(rules, results((0, "performance", "accuracy", 0.74, 3000)), reference) == ["accuracy-low"]
    assert fired(rules, results((0, "performance", "accuracy", 0.35, 3000)), reference) == [
        "accuracy-low",
        "accuracy-critical",
    ]
    # 200 labelled rows: an accuracy's standard error is 0.028, so 3 of them (0.085) outweigh the 0.05 margin.
    assert fired(rules, results((0, "performance", "accuracy", 0.73, 200)), reference) == []
    assert low.margin(0.80, None, 200) == pytest.approx(3 * np.sqrt(0.8 * 0.2 / 200))
    # Macro F1 of rare classes is noisier: its margin grows with the classes' shares.
    macro = next(r for r in task_alerts(DEFAULT_ALERTS, "multiclass", "macro_f1") if r.name == "accuracy-low")
    balanced, skewed = macro.margin(0.8, None, 200, [0.25] * 4), macro.margin(0.8, None, 200, [0.7, 0.2, 0.07, 0.03])
    assert balanced == pytest.approx(low.margin(0.8, None, 200)) and skewed > 1.6 * balanced


def test_the_macro_f1_noise_model_covers_simulated_windows():
    """Healthy windows fire the warning rarely: simulated predictions at a fixed per-row accuracy."""
    rng = np.random.default_rng(11)
    macro = next(r for r in task_alerts(DEFAULT_ALERTS, "multiclass", "macro_f1") if r.name == "accuracy-low")
    for shares in ([0.25] * 4, [0.7, 0.2, 0.07, 0.03]):
        k, n = len(shares), 200
        y = rng.choice(k, (1500, n), p=shares)
        guess = np.where(rng.random((1500, n)) < 0.8, y, rng.integers(0, k, (1500, n)))
        scores = np.array([f1_score(a, b, average="macro") for a, b in zip(y, guess)])
        reference = float(np.mean(scores))
        assert np.mean(scores < reference - macro.margin(reference, None, n, shares)) < 0.01
        assert np.std(scores) <= 1.15 * proportion_standard_error(reference, n, shares)


def test_an_explicit_rule_on_a_tasks_metric_is_kept_as_written():
    own = AlertRule("mae-drop", "performance", "mae", ">", 0.10, relative_to="reference")
    assert task_alerts([own, *DEFAULT_ALERTS], "regression", "rmse")[0] == own
    with pytest.raises(ValueError, match="noise_z"):
        AlertRule("r", "performance", "rmse", ">", 0.2, relative_to="reference", noise_z=3)
    section = msgspec.convert(
        {"performance": {"metric_limit": 5.0}, "prediction": {"mean_shift": 0.2}}, MonitoringSection
    )
    limits = with_performance_limit(section, {"rmse": 4.0}, REGRESSION, "rmse")
    assert limits.performance.limit("rmse") == 5.0 and section.prediction.mean_shift == 0.2
    assert json.loads(msgspec.json.encode(MonitoringSection()))["performance"]["max_metric_rise"] == 0.25


# -- the monitor job over a real prediction log ----------------------------------------------------


def ticket_model(frame: pl.DataFrame) -> np.ndarray:
    """The tickets' own generating probabilities (``tests.task_data.write_tickets``): the best model there is."""
    words, channel = frame["words"].to_numpy(), frame["channel"].to_numpy()
    attachment, hour = frame["attachment"].to_numpy(), frame["hour"].to_numpy()
    logits = (
        np.stack(
            [
                0.8 * attachment + 0.6 * (channel == 10) - 0.004 * words,
                0.01 * words - 0.5 + 0.5 * (channel == 20),
                1.2 * ((hour >= 9) & (hour < 17)) - 0.8 + 0.7 * (channel == 30),
                -1.0 + 1.5 * (hour < 5),
            ],
            axis=1,
        )
        * 2.0
    )
    return softmax(logits)


def delivery_model(frame: pl.DataFrame) -> np.ndarray:
    """The deliveries' expected minutes (``tests.task_data.write_deliveries``), as a model would learn them."""
    speed = frame.select(pl.col("vehicle").replace_strict({"bike": 0.25, "scooter": 0.4, "van": 0.5}))
    return (
        8
        + frame["distance_km"].to_numpy() / speed.to_series().to_numpy()
        + 6 * frame["rush"].to_numpy()
        + 4 * (frame["zone"].to_numpy() == "hills")
        + 1.5 * frame["items"].to_numpy()
    ) * np.exp(0.15**2 / 2)


def tickets(path: Path) -> pl.DataFrame:
    """A tickets CSV typed as its contract types it."""
    return pl.read_csv(path).with_columns(
        pl.col("opened").str.to_datetime(time_zone="UTC", time_unit="us"),
        pl.col("attachment").cast(pl.String) == "true",
        pl.col("words").cast(pl.Float64),
    )


def deliveries(folder: Path, name: str) -> pl.DataFrame:
    frame = pl.read_parquet(folder / name).join(pl.read_parquet(folder / "couriers.parquet"), on="courier")
    return frame.with_columns(pl.col("ordered_at").dt.replace_time_zone("UTC"))


def register(home, spec, task: Task, evaluation: pl.DataFrame, output: np.ndarray) -> int:
    """A production version of the spec's model whose evaluation rows and outputs are these, stored as the
    pipeline stores them (a tracked run's reference artifact, its metrics in the registry)."""
    from appliance.monitoring.reference import ARTIFACT
    from appliance.tracking.run import TrackedRun

    with TrackedRun.create(home.tracking, home.artifacts, model=spec.name, name="register", kind="register") as run:
        run.log_artifact(ARTIFACT, reference_bytes(spec, evaluation, output, task))
    home.conn.execute(
        "INSERT INTO runs (id, model, kind, status, started_at) VALUES (?, ?, 'register', 'succeeded', 0)",
        (run.id, spec.name),
    )
    metrics = evaluate_metrics(task, task.labels(evaluation[spec.target.column].to_list()), output)
    version = register_metrics(home, spec.name, run.id, metrics)
    home.registry.promote(spec.name, version)
    return version


def log_traffic(
    root: Path, spec, task: Task, version: int, live: pl.DataFrame, output: np.ndarray, fields: list[str]
) -> list[str]:
    """Live rows written to predictions.db as serving writes them, one request a day; the request ids."""
    from storage.prediction_log import PredictionStore

    event_time = spec.features.event_time
    days = live[event_time].dt.date()
    records = live.select(fields).with_columns(pl.col(event_time).dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_dicts()
    rows = []
    for i, (record, day) in enumerate(zip(records, days)):
        request = f"req-{day}"
        if task.kind == "multiclass":
            best = int(np.argmax(output[i]))
            answer = (float(output[i][best]), best, None, json.dumps([float(p) for p in output[i]]))
        else:
            answer = (None, None, float(output[i]), None)
        rows.append(
            (
                request,
                i,
                spec.name,
                version,
                "production",
                None,
                1.8e9,
                record[event_time],
                record.get(spec.features.entity_key),
                json.dumps(record),
                answer[0],
                answer[1],
                3.0,
                200,
                answer[2],
                answer[3],
            )
        )
    store = PredictionStore(Layout(root).predictions_db)
    try:
        store.append(rows)
    finally:
        store.close()
    return [r[0] for r in rows]


def post_feedback(root: Path, model: str, requests: list[str], outcomes: list[float], keep: np.ndarray) -> None:
    from storage.prediction_log import PredictionStore

    store = PredictionStore(Layout(root).predictions_db)
    try:
        assert (
            store.attach_feedback(
                model, [(r, i, float(o)) for i, (r, o) in enumerate(zip(requests, outcomes)) if keep[i]]
            )
            == []
        )
    finally:
        store.close()


def judged_alerts(root: Path, run):
    """The alerts a monitor job's run fired (the job judges the alert rules on the rows it wrote), once the
    actions they started are done."""
    from appliance.alerts import actions, records
    from appliance.home import Home

    assert actions.wait_for_actions(600)
    with Home(root) as home:
        return [records.alert(home.conn, alert) for alert in run.summary["alerts_fired"]]


def columns(header: str) -> list[str]:
    """A text table's column names (two spaces or more apart)."""
    return [c.strip() for c in header.split("  ") if c.strip()]


def assert_retrained(root: Path, model: str, alert: int) -> None:
    """The alert's retrain ran the pipeline through to a new version (whether its gates pass is the gates'
    business: here production is a stand-in without an artifact, so 'no regression' cannot pass)."""
    from appliance.alerts import records
    from appliance.home import Home

    with Home(root) as home:
        [action] = records.alert(home.conn, alert).actions
        versions = home.registry.versions(model)
    assert (action.action, action.detail.get("version")) == ("retrain", 2), action.detail
    assert versions[-1].version == 2 and versions[-1].run_id == action.detail["run_id"]


def test_a_multiclass_model_monitored_from_its_log_to_the_alert(tmp_path: Path):
    from appliance.home import Home
    from appliance.monitoring import store
    from appliance.monitoring.monitor import logged_traffic
    from appliance.scheduler.jobs import run_job
    from tests.task_data import write_tickets

    folder = tmp_path / "tickets"
    spec = load_spec(write_tickets(folder, name="triage", per_day=2000))  # windows large enough to judge drift
    root = tmp_path / "home"
    history, live = tickets(folder / "tickets.csv"), tickets(folder / "live.csv")
    evaluation = history.filter(pl.col("opened") >= history["opened"].max().date() - timedelta(days=2))
    with Home(root) as home:
        home.add_model(spec)
        task = MULTICLASS
        version = register(home, spec, task, evaluation, ticket_model(evaluation))
    output = ticket_model(live)
    requests = log_traffic(
        root, spec, task, version, live, output, ["opened", "words", "channel", "attachment", "hour"]
    )
    day = live["opened"].dt.date().rank("dense").cast(pl.Int64).to_numpy() - 1  # 0, 1, 2
    truth = task.codes(live["team"].to_list())
    outcomes = np.where(day == 2, np.select([truth == 0, truth == 1], [1, 0], truth), truth)  # routing changed
    post_feedback(root, "triage", requests, outcomes.tolist(), keep=day != 1)  # day 2: none yet

    with Home(root) as home:
        frame = logged_traffic(home, spec, version)
    assert frame["_label"].dtype == pl.Int64 and frame["_proba.3"].to_numpy() == pytest.approx(output[:, 3])
    run = run_job(root, "monitor", "triage")
    assert run.status == "succeeded", run.error
    with Home(root) as home:
        out = store.results(home, "triage")
    realized = out.filter(check="performance", feature="*", method="macro_f1").sort("window_start")
    chosen = np.argmax(output, axis=1)
    for i in (0, 2):
        expected = f1_score(outcomes[day == i], chosen[day == i], average="macro")
        assert realized["value"][i] == pytest.approx(expected, abs=1e-12)
    assert realized["value"][1] is None and realized["alert"].to_list() == [False, False, True]
    estimated = out.filter(check="estimated").pivot(on="method", index="window_start", values="value")
    assert {"accuracy", "macro_f1", "macro_f1_lower", "macro_f1_upper"} <= set(estimated.columns)
    assert (
        (estimated["macro_f1_lower"] < estimated["macro_f1"]) & (estimated["macro_f1"] < estimated["macro_f1_upper"])
    ).all()
    drift = out.filter(check="drift", feature="prediction")
    assert {"psi", "predicted_rate.billing", "probability_psi.abuse"} <= set(drift["method"])
    assert not drift["alert"].any()  # the inputs never moved: nor did the output
    table = monitor_report(out, "performance")  # `appliance monitor triage --check performance`
    assert columns(table[0]) == [
        "window",
        "version",
        "labelled",
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "estimated accuracy [band]",
        "estimated macro_f1 [band]",
        "alert",
    ]
    accuracy = out.filter(check="performance", feature="*", method="accuracy").sort("window_start")["value"]
    assert table[3].split()[3] == f"{accuracy[2]:.4g}" and table[3].endswith("ALERT") and "ALERT" not in table[1]
    assert columns(monitor_report(out, None)[0])[-3:] == ["macro_f1", "estimated macro_f1", "p99 ms"]

    opened = judged_alerts(root, run)
    critical = next(a for a in opened if a.rule == "accuracy-critical")
    assert critical.value == pytest.approx(realized["value"][2]) and critical.window_start.startswith(
        str(realized["window_start"][2].date())
    )
    assert critical.message.startswith("realized macro_f1 ") and f"below v{version}'s reference" in critical.message
    assert {a.rule for a in opened} >= {"accuracy-low", "accuracy-critical"}
    assert_retrained(root, "triage", critical.id)


def test_a_regression_model_whose_error_doubles_is_caught_and_retrained(tmp_path: Path):
    from appliance.home import Home
    from appliance.monitoring import store
    from appliance.monitoring.monitor import logged_traffic
    from appliance.scheduler.jobs import run_job
    from tests.task_data import write_deliveries

    folder = tmp_path / "deliveries"
    spec = load_spec(write_deliveries(folder, name="eta", per_day=2000))
    root = tmp_path / "home"
    history, live = deliveries(folder, "history.parquet"), deliveries(folder, "live.parquet")
    evaluation = history.filter(pl.col("ordered_at") >= history["ordered_at"].max().date() - timedelta(days=2))
    with Home(root) as home:
        home.add_model(spec)
        version = register(home, spec, REGRESSION, evaluation, delivery_model(evaluation))
    output = delivery_model(live)
    requests = log_traffic(
        root, spec, REGRESSION, version, live, output, ["ordered_at", "courier", "distance_km", "zone", "rush", "items"]
    )
    day = live["ordered_at"].dt.date().rank("dense").cast(pl.Int64).to_numpy() - 1
    minutes = live["minutes"].to_numpy() * np.where(day == 2, 2.0, 1.0)  # day 3: every delivery twice as slow
    post_feedback(root, "eta", requests, minutes.tolist(), keep=day != 1)

    with Home(root) as home:
        frame = logged_traffic(home, spec, version)
    assert frame["_label"].dtype == pl.Float64 and frame["_label"].drop_nulls().to_list() == pytest.approx(
        minutes[day != 1].tolist()
    )  # minutes, not truncated integers
    run = run_job(root, "monitor", "eta")
    assert run.status == "succeeded", run.error
    with Home(root) as home:
        out = store.results(home, "eta")
        reference_rmse = home.registry.version("eta", version).metrics["rmse"]
    rmse = out.filter(check="performance", feature="*", method="rmse").sort("window_start")
    for i in (0, 2):
        expected = np.sqrt(mean_squared_error(minutes[day == i], output[day == i]))
        assert rmse["value"][i] == pytest.approx(expected, abs=1e-9)
    assert rmse["value"][2] > 2 * reference_rmse and rmse["alert"].to_list() == [False, False, True]
    assert out.filter(check="performance", feature="zone=hills", method="mae").height == 3
    estimated = out.filter(check="estimated").pivot(on="method", index="window_start", values="value")
    assert {"rmse", "rmse_lower", "rmse_upper", "mae"} <= set(estimated.columns)
    assert estimated["rmse"][1] == pytest.approx(reference_rmse, rel=0.3)  # DLE stands in for day 2's labels
    drift = out.filter(check="drift", feature="prediction")
    assert {"psi", "mean", "mean_shift"} <= set(drift["method"]) and not drift["alert"].any()
    table = monitor_report(out, "performance")
    assert columns(table[0]) == [
        "window",
        "version",
        "labelled",
        "rmse",
        "mae",
        "r2",
        "estimated rmse [band]",
        "estimated mae [band]",
        "alert",
    ]
    assert columns(monitor_report(out, None)[0])[-3:] == ["rmse", "estimated rmse", "p99 ms"]

    opened = judged_alerts(root, run)
    critical = next(a for a in opened if a.rule == "accuracy-critical")
    assert critical.severity == "critical" and critical.value == pytest.approx(rmse["value"][2])
    assert critical.message.startswith("realized rmse ") and "50% of it" in critical.message
    assert_retrained(root, "eta", critical.id)

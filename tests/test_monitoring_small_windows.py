"""A window of one row (a stray request on a quiet day) is reported but measures nothing NannyML computes,
whatever else the run recomputes beside it, and every other check and window of the run is still written.

NannyML's period chunker cannot split a frame of one row under pandas 3; a monitor run reads each stretch of
consecutive changed windows as one frame, so a lone one-row day used to fail every run of the model's monitor
job, drift, performance and alerts with it.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from appliance.monitoring.estimation import estimate_performance, reconstruction_drift
from appliance.monitoring.monitor import LABEL
from appliance.monitoring.reference import SCORE
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature, load_spec
from appliance.spec.monitoring import MonitoringSection
from appliance.task import Task
from tests.test_monitoring_tasks import (
    MULTICLASS,
    REGRESSION,
    deliveries,
    delivery_model,
    log_traffic,
    multiclass_rows,
    post_feedback,
    register,
    regression_rows,
)

RULES = MonitoringSection(min_window_rows=50)
FEATURES = [Feature("x", "float"), Feature("channel", "category"), Feature("rush", "boolean")]
CHURN = Task("binary", ("stays", "churns"), threshold=0.4)


def churn_rows(rng: np.random.Generator, n: int, first_day: int, days: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Rows of a binary model: its score and whether the customer churned (0/1), more often as x grows."""
    start = datetime(2029, 3, 10, tzinfo=UTC) + timedelta(days=first_day)
    seconds = np.sort(rng.integers(0, days * 86400, n))
    x = rng.normal(0, 1, n)
    score = 1 / (1 + np.exp(-1.5 * x))
    frame = pl.DataFrame(
        {
            "event_time": [start + timedelta(seconds=int(s)) for s in seconds],
            "x": x,
            "channel": rng.choice(["app", "web"], n),
            "rush": rng.random(n) < 0.2,
            SCORE: score,
        }
    )
    return frame, (rng.random(n) < score).astype(np.int64)


TASKS = {
    "binary": (churn_rows, CHURN, "auc"),
    "multiclass": (multiclass_rows, MULTICLASS, "accuracy"),
    "regression": (regression_rows, REGRESSION, "rmse"),
}


@pytest.mark.parametrize("kind", list(TASKS))
def test_a_one_row_window_is_reported_unmeasured_alone_or_beside_others(kind: str):
    rows, task, metric = TASKS[kind]
    rng = np.random.default_rng(31)
    reference, y = rows(rng, 600, 0, 3)
    reference = reference.with_columns(pl.Series(LABEL, y))
    day, _ = rows(rng, 300, 5, 1)
    lone, _ = rows(rng, 1, 7, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NannyML warns about pandas internals
        for live in (lone, pl.concat([day, lone])):  # the run reads it alone, or with the windows between
            windows = EventWindows(live, "event_time", "1d")
            drift = reconstruction_drift(reference, live, windows, "event_time", FEATURES, RULES)
            est = estimate_performance(reference, live, windows, "event_time", LABEL, task, metric, FEATURES, RULES)
            assert drift["rows"][-1] == 1 and drift["reconstruction_error"][-1] is None
            assert drift["threshold"][-1] is not None and not drift["alert"][-1]
            at_lone = est.filter(pl.col("window_start") == windows.starts[-1])
            assert (
                at_lone["rows"].to_list() == [1] * at_lone.height
                and at_lone["estimated"].null_count() == at_lone.height
            )
            assert not at_lone["alert"].any()
    # Beside it the 300-row day is measured as before; the empty day between is a window with nothing in it.
    assert drift["rows"].to_list() == [300, 0, 1] and drift["reconstruction_error"][0] is not None
    assert est.filter(pl.col("window_start") == windows.starts[0])["estimated"].null_count() == 0


def _lone_day(tmp_path: Path) -> tuple[Path, pl.DataFrame, np.ndarray]:
    """A regression model's data directory whose log holds its first live day in full and one delivery two days
    later (a window of its own), all labelled: the root, the live rows and the model's answers."""
    from appliance.home import Home
    from tests.task_data import write_deliveries

    folder, root = tmp_path / "deliveries", tmp_path / "home"
    spec = load_spec(write_deliveries(folder, name="eta", days=6, per_day=150))
    evaluation = deliveries(folder, "history.parquet").tail(450)  # the history's last three days, in time order
    with Home(root) as home:
        home.add_model(spec)
        version = register(home, spec, REGRESSION, evaluation, delivery_model(evaluation))
    live = deliveries(folder, "live.parquet")
    day = live["ordered_at"].dt.date().rank("dense").cast(pl.Int64)
    # The first live day in full, and a single delivery two days later: a window of its own.
    live = pl.concat([live.filter(day == 1), live.filter(day == 3).head(1)])
    output = delivery_model(live)
    fields = ["ordered_at", "courier", "distance_km", "zone", "rush", "items"]
    requests = log_traffic(root, spec, REGRESSION, version, live, output, fields)
    post_feedback(root, "eta", requests, live["minutes"].to_list(), keep=np.ones(live.height, dtype=bool))
    return root, live, output


def test_a_monitor_job_over_a_lone_one_row_day_writes_every_check(tmp_path: Path):
    from appliance.home import Home
    from appliance.monitoring import store
    from appliance.scheduler.jobs import run_job

    root, live, output = _lone_day(tmp_path)
    run = run_job(root, "monitor", "eta")
    assert run.status == "succeeded", run.error
    with Home(root) as home:
        out = store.results(home, "eta")
    first, lone = sorted(set(out.filter(pl.col("check") == "performance")["window_start"]))
    assert lone - first == timedelta(days=2)
    # Every check wrote both windows; of the lone day's, only its volume alerts (a day of one row is a quiet one).
    for start, rows, alerts in ((first, live.height - 1, []), (lone, 1, [("quality", "volume_low")])):
        window = out.filter(pl.col("window_start") == start)
        assert {"performance", "quality", "drift", "estimated", "serving"} <= set(window["check"])
        assert set(window.filter(pl.col("check") != "performance")["rows"]) == {rows}
        assert window.filter("alert").select("check", "method").rows() == alerts
    whole = out.filter(pl.col("feature") == "*").select("window_start", "check", "method", "value")
    value = {(start, check, method): v for start, check, method, v in whole.iter_rows()}
    for start, measured in ((first, True), (lone, False)):
        for check, method in (("drift", "reconstruction_error"), ("estimated", "rmse"), ("estimated", "rmse_upper")):
            assert (value[start, check, method] is not None) == measured, (start, check, method)
    # The lone delivery's label is still judged where one row can be: its realized error.
    assert value[lone, "performance", "mae"] == pytest.approx(abs(live["minutes"][-1] - output[-1]))


def test_windows_whose_checks_fail_leave_the_others_measured_and_are_tried_again(tmp_path: Path, monkeypatch):
    """Handed the lone one-row day again (the guard lowered), NannyML fails on it as it did on every such day: the
    run writes the full day's checks and judges them, fails saying which windows it left out, and says so where
    results are read; the next run, the guard back, measures the lone day it left."""
    from appliance.home import Home
    from appliance.monitoring import estimation, store
    from appliance.scheduler.jobs import run_job

    root, _, _ = _lone_day(tmp_path)
    monkeypatch.setattr(estimation, "MIN_MEASURED_ROWS", 1)
    run = run_job(root, "monitor", "eta")
    assert run.status == "failed" and run.error.startswith("MonitoringIncomplete: 1 group(s) of windows")
    assert "ChunkerException" in run.error
    with Home(root) as home:
        out = store.results(home, "eta")
        incomplete = store.failing(home, "eta") or ""  # a part-run: the other windows are up to date
        assert incomplete.startswith("monitoring is incomplete: the newest monitor run of 'eta'"), incomplete
        assert "could not check some windows (MonitoringIncomplete" in incomplete
    first = out.filter(pl.col("check") == "performance")["window_start"].min()
    assert set(out.filter(pl.col("check") == "performance")["window_start"]) == {first}  # the lone day left out
    assert {"machine", "pipeline", "serving"} <= set(out["check"])
    monkeypatch.setattr(estimation, "MIN_MEASURED_ROWS", 2)
    again = run_job(root, "monitor", "eta")
    assert again.status == "succeeded", again.error
    assert again.summary["recomputed"] == 1  # the window the failed run did not record, and only that one
    with Home(root) as home:
        assert store.failing(home, "eta") is None
        lone = store.results(home, "eta").filter(pl.col("check") == "performance")["window_start"].max()
    assert lone - first == timedelta(days=2)

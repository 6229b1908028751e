"""The monitoring story both renderers draw: the served version's data windows with machine and pipeline rows
apart, each statistic against its own threshold, and the judged metric beside its estimate, for a regression
and a multiclass model as for a binary one. Results are written to a real monitoring.db through the store,
shaped as the monitor job writes them (a 12-hour window, string keys, two versions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from monitoring_rows import RUN_AT as RUN
from monitoring_rows import result, store
from task_data import write_deliveries, write_tickets

from appliance.errors import NotFound
from appliance.home import Home
from appliance.monitoring.story import monitoring_story
from appliance.spec import load_spec

START = datetime(2026, 7, 15, tzinfo=UTC)
HALF_DAY = timedelta(hours=12)
BELOW = ("volume_low", "macro_f1")  # they alert under their threshold


def _row(version: int, start: datetime, check: str, feature: str, method: str, value, threshold, rows: int):
    """A result row as the monitor job writes it; the serving check's log_overflow, like machine and pipeline,
    is stamped with the run's moment."""
    row = result(version, start, HALF_DAY, check, feature, method, value, threshold, rows, below=method in BELOW)
    return {**row, "window_end": start} if method == "log_overflow" else row


def _registered(tmp_path: Path, spec: Path) -> Path:
    home = tmp_path / "home"
    with Home(home) as h:
        h.add_model(load_spec(spec))
    return home


def _regression_windows(version: int, starts: list[datetime]) -> list[dict]:
    rows = []
    for i, start in enumerate(starts):
        n = 53 if i == 0 else 400
        rows += [
            # A 53-row window's PSI is large by chance alone, and its threshold says so: 5.5 against 8.0.
            _row(version, start, "drift", "distance_km", "psi", 5.5 if i == 0 else 0.01, 8.0 if i == 0 else 0.02, n),
            _row(version, start, "drift", "distance_km", "ks", 0.09 * i, 0.045, n),
            _row(version, start, "drift", "zone", "jensen_shannon", 0.01, 0.05, n),
            _row(version, start, "drift", "prediction", "positive_rate", 0.3, None, n),
            _row(version, start, "drift", "prediction", "psi", 0.04, 0.02, n),
            _row(version, start, "quality", "*", "volume_low", 0.5, 0.25, n),
            _row(version, start, "quality", "zone", "missing_rate", 0.0, 0.05, n),
            _row(version, start, "performance", "*", "rmse", 9.0 + i, 10.0, n // 2),
            _row(version, start, "performance", "*", "mae", 7.0, None, n // 2),
            _row(version, start, "performance", "zone=north", "rmse", 12.0, 10.0, n // 8),
            _row(version, start, "estimated", "*", "rmse", 8.5, 10.0, n),
            _row(version, start, "estimated", "*", "rmse_lower", 7.5, None, n),
            _row(version, start, "estimated", "*", "rmse_upper", 9.5, None, n),
            _row(version, start, "serving", "*", "requests", float(n // 4), None, n),
            _row(version, start, "serving", "*", "error_rate", 0.0, None, n),
            _row(version, start, "serving", "*", "latency_p50_ms", 2.0, None, n),
            _row(version, start, "serving", "*", "latency_p99_ms", 9.0, None, n),
        ]
    return rows


def _run_rows(version: int, at: datetime) -> list[dict]:
    return [
        _row(version, at, "machine", "cpu", "percent", 40.0, None, 0),
        _row(version, at, "pipeline", "*", "failure_streak", 0.0, None, 0),
        _row(version, at, "serving", "*", "log_overflow", 0.0, None, 0),
    ]


def test_each_window_is_told_by_the_version_that_served_it_with_runs_apart(tmp_path: Path):
    home = _registered(tmp_path, write_deliveries(tmp_path / "data"))
    old = [START - HALF_DAY * 2, START - HALF_DAY]
    served = [START, START + HALF_DAY, START + 2 * HALF_DAY]
    # v1 served two windows, then v2 three; a canary v3 answered 53 rows of a window v2 served with 400
    store(home, "eta", [*_regression_windows(1, old), *_regression_windows(2, served)])
    store(home, "eta", _regression_windows(3, [served[1]]))
    store(home, "eta", _run_rows(2, RUN) + _run_rows(2, RUN + timedelta(hours=1)))
    with Home(home) as h:
        story = monitoring_story(h, "eta")
    # No production alias: the newest version with results is the one serving now.
    assert (story.model, story.served_version, story.versions) == ("eta", 3, [1, 2, 3])
    assert story.windows == old + served  # the run times (a month later) are no column of the drift view
    assert story.eras == [(1, old[0], old[-1]), (2, served[0], served[-1])]  # across the promotion, not the canary
    assert (story.metric, story.lower_is_better) == ("rmse", True)

    drift = story.drift
    assert drift.columns == ["window_start", "feature", "method", "value", "threshold", "alert", "rows", "score"]
    assert set(drift["window_start"]) == set(old + served) and "prediction" in set(drift["feature"])
    first = drift.filter(pl.col("window_start") == START)
    psi = first.filter(feature="distance_km", method="psi")["score"][0]
    ks_late = drift.filter(pl.col("window_start") == served[2], feature="distance_km", method="ks")["score"][0]
    assert psi == pytest.approx(5.5 / 8.0) and ks_late == pytest.approx(4.0)  # the 53-row PSI is not the episode
    assert first.filter(method="positive_rate")["score"][0] is None  # no threshold: no score
    quality = story.quality
    assert quality.filter(method="volume_low")["score"].to_list() == pytest.approx([0.5] * 5)  # alerts below
    assert quality.filter(method="missing_rate")["score"].to_list() == [0.0] * 5

    perf = story.performance.filter(pl.col("window_start").is_in(served))
    assert perf.columns[:8] == [
        "window_start",
        "realized",
        "estimated",
        "lower",
        "upper",
        "threshold",
        "rows",
        "labelled",
    ]
    assert perf["window_start"].to_list() == served
    assert perf["realized"].to_list() == [9.0, 10.0, 11.0]  # overall, not the north segment's 12
    assert perf["estimated"].to_list() == [8.5] * 3 and perf["lower"].to_list() == [7.5] * 3
    assert perf["threshold"].to_list() == [10.0] * 3 and perf["alert"].to_list() == [False, False, True]
    assert perf["rows"].to_list() == [53, 400, 400] and perf["labelled"].to_list() == [26, 200, 200]

    traffic = story.traffic.filter(pl.col("window_start").is_in(served))
    assert traffic["window_start"].to_list() == served
    assert traffic["requests"].to_list() == [13.0, 100.0, 100.0]
    assert traffic["latency_p95_ms"].null_count() == 3  # this serving check had none
    ops = story.operations
    assert ops.columns == ["at", "check", "feature", "method", "value"]
    assert set(ops["check"]) == {"machine", "pipeline", "serving"} and ops.height == 6
    assert ops["at"].min() == RUN

    with Home(home) as h:
        later = monitoring_story(h, "eta", since=served[1])
    assert later.windows == served[1:]
    assert later.performance.height == 2


def test_a_multiclass_model_is_judged_by_its_metric_and_a_model_without_results_has_an_empty_story(
    tmp_path: Path,
):
    home = _registered(tmp_path, write_tickets(tmp_path / "data"))
    with Home(home) as h:
        empty = monitoring_story(h, "triage")
        with pytest.raises(NotFound, match="unknown model 'nope'"):
            monitoring_story(h, "nope")
    assert (empty.windows, empty.versions, empty.served_version) == ([], [], None)
    assert (empty.metric, empty.lower_is_better) == ("macro_f1", False)
    assert empty.drift.is_empty() and "score" in empty.drift.columns
    assert empty.performance.is_empty() and "estimated" in empty.performance.columns
    assert empty.traffic.is_empty() and empty.operations.is_empty()

    day = START.replace(hour=0)
    rows = [
        _row(1, day, "performance", "*", "macro_f1", 0.61, 0.7, 300),
        _row(1, day, "performance", "*", "accuracy", 0.7, None, 300),
        _row(1, day, "estimated", "*", "macro_f1", 0.8, 0.7, 900),
        _row(1, day, "drift", "prediction", "predicted_rate.billing", 0.2, None, 900),
    ]
    store(home, "triage", rows + _run_rows(1, RUN))
    with Home(home) as h:
        story = monitoring_story(h, "triage")
    assert story.windows == [day] and story.served_version == 1
    [perf] = story.performance.iter_rows(named=True)
    assert (perf["realized"], perf["estimated"], perf["lower"], perf["alert"]) == (0.61, 0.8, None, True)
    assert perf["rows"] is None and perf["labelled"] == 300  # no serving row: the window's size is unknown

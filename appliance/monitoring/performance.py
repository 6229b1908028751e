"""Realized performance per event-time window once labels arrive, overall and per segment.

Each task reports its own metrics: binary AUC, precision, recall and F1; multiclass accuracy, macro and
weighted F1; regression RMSE, MAE and R² (and the metric that judges the model, when it is another). Only
the judging metric alerts, past its limit (``MonitoringSection.performance.limit``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from appliance.monitoring.reference import SCORE, proba_columns, task_output
from appliance.monitoring.windows import EventWindows, checks, empty_checks
from appliance.scoring.metrics import binary_metrics, evaluate
from appliance.spec.monitoring import MonitoringSection
from appliance.task import Task, higher_is_better

METRICS = ("auc", "precision", "recall", "f1")
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": METRICS,
    "multiclass": ("accuracy", "macro_f1", "weighted_f1"),
    "regression": ("rmse", "mae", "r2"),
}
ALL = "*"


def performance_by_window(
    frame: pl.DataFrame,
    windows: EventWindows,
    label: str,
    score: str,
    decision_threshold: float,
    rules: MonitoringSection,
    segment: str | None = None,
) -> pl.DataFrame:
    """A binary model's AUC, precision, recall and F1 of the labelled rows per window, as check rows.

    ``feature`` is '*' for all rows, or 'COLUMN=VALUE' per segment when ``segment`` names a
    column. Only AUC alerts (below ``performance.min_auc``); unlabelled rows are left out.
    """

    def measure(part: pl.DataFrame) -> dict[str, float]:
        part = part.filter(pl.col(score).is_finite())  # the AUC refuses a score without a rank; judge the rest
        return binary_metrics(part[label].to_numpy(), part[score].to_numpy(), decision_threshold)

    limits = {"auc": (rules.performance.auc_floor, True)}
    return _by_window(frame, windows, [label, score], measure, METRICS, limits, rules, segment)


def task_performance_by_window(
    frame: pl.DataFrame,
    windows: EventWindows,
    label: str,
    task: Task,
    metric: str,
    rules: MonitoringSection,
    segment: str | None = None,
) -> pl.DataFrame:
    """The task's metrics of the labelled rows per window (overall and per segment), as check rows.

    ``label`` holds the feedback as the task reads it (binary 0/1, a multiclass class index, a regression
    value) and the model's output is in the reference's columns (``reference.task_output``). ``metric``
    judges the model: it is reported whatever the task's usual set, and alone alerts past its limit."""
    if task.kind == "binary" and metric == "auc":
        return performance_by_window(frame, windows, label, SCORE, task.threshold, rules, segment)

    def measure(part: pl.DataFrame) -> dict[str, float]:
        return evaluate(task, part[label].to_numpy(), task_output(part, task))

    methods = TASK_METRICS[task.kind] + ((metric,) if metric not in TASK_METRICS[task.kind] else ())
    limits = {metric: (rules.performance.limit(metric), higher_is_better(metric))}
    if task.kind == "binary":  # a binary model judged by another metric keeps its AUC floor too
        limits["auc"] = (rules.performance.auc_floor, True)
    return _by_window(frame, windows, [label, *task_output_columns(task)], measure, methods, limits, rules, segment)


def task_output_columns(task: Task) -> list[str]:
    """The frame columns a task's metrics read the model's output from."""
    return proba_columns(task) if task.kind == "multiclass" else [SCORE]


def _by_window(
    frame: pl.DataFrame,
    windows: EventWindows,
    needed: list[str],
    measure: Callable[[pl.DataFrame], dict[str, float]],
    methods: tuple[str, ...],
    limits: dict[str, tuple[float, bool]],
    rules: MonitoringSection,
    segment: str | None,
) -> pl.DataFrame:
    """Check rows of ``methods`` per window and group, measured on the rows where every ``needed`` column is
    known; ``limits`` maps a method to (its limit, whether a window alerts below it rather than above)."""
    known = pl.all_horizontal([pl.col(c).is_not_null() for c in needed])
    labelled = frame.with_columns(_window=pl.Series(windows.code)).filter(known & (pl.col("_window") >= 0))
    groups = [(ALL, labelled)]
    if segment is not None:
        groups += [
            (f"{segment}={value}", part)
            for (value,), part in labelled.group_by(segment, maintain_order=True)
            if value is not None
        ]
    parts = [empty_checks()]
    for name, part in sorted(groups, key=lambda g: g[0]):
        values = {m: np.full(windows.count, np.nan) for m in methods}
        rows = np.zeros(windows.count, dtype=np.int64)
        for (code,), rows_of_window in part.group_by("_window"):
            metrics = measure(rows_of_window)
            rows[code] = rows_of_window.height
            for m in methods:
                values[m][code] = metrics.get(m, np.nan)
        for m in methods:
            limit, below = limits.get(m, (np.nan, True))
            parts.append(checks(windows, name, m, values[m], limit, rows, rules.min_window_rows, alert_below=below))
    return pl.concat(parts)

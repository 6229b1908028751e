"""Realized performance per event-time window once labels arrive, overall and per segment."""

from __future__ import annotations

import numpy as np
import polars as pl

from appliance.monitoring.rules import MonitoringSection
from appliance.monitoring.windows import EventWindows, checks, empty_checks
from appliance.training.metrics import binary_metrics

METRICS = ("auc", "precision", "recall", "f1")
ALL = "*"


def performance_by_window(frame: pl.DataFrame, windows: EventWindows, label: str, score: str,
                          decision_threshold: float, rules: MonitoringSection,
                          segment: str | None = None) -> pl.DataFrame:
    """AUC, precision, recall and F1 of the labelled rows per window, as check rows.

    ``feature`` is '*' for all rows, or 'COLUMN=VALUE' per segment when ``segment`` names a
    column. Only AUC alerts (below ``performance.min_auc``); unlabelled rows are left out.
    """
    labelled = (frame.with_columns(_window=pl.Series(windows.code))
                .filter(pl.col(label).is_not_null() & pl.col(score).is_not_null() & (pl.col("_window") >= 0)))
    groups = [(ALL, labelled)]
    if segment is not None:
        groups += [(f"{segment}={value}", part) for (value,), part in
                   labelled.group_by(segment, maintain_order=True) if value is not None]
    parts = [empty_checks()]
    for name, part in sorted(groups, key=lambda g: g[0]):
        values = {m: np.full(windows.count, np.nan) for m in METRICS}
        rows = np.zeros(windows.count, dtype=np.int64)
        for (code,), rows_of_window in part.group_by("_window"):
            metrics = binary_metrics(rows_of_window[label].to_numpy(), rows_of_window[score].to_numpy(),
                                     decision_threshold)
            rows[code] = rows_of_window.height
            for m in METRICS:
                values[m][code] = metrics[m]
        for m in METRICS:
            threshold = rules.performance.auc_floor if m == "auc" else np.nan
            parts.append(checks(windows, name, m, values[m], threshold, rows, rules.min_window_rows,
                                alert_below=True))
    return pl.concat(parts)

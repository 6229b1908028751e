"""Prediction drift: has the model's output moved, whatever the inputs did?

Two signals per window against the reference's out-of-sample scores: PSI of the score
distribution on the reference's quantile bins, and the change of the predicted positive rate
(the share of scores at or above the decision threshold).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from appliance.monitoring import drift
from appliance.monitoring.feature_drift import FeatureProfile
from appliance.monitoring.rules import MonitoringSection
from appliance.monitoring.windows import EventWindows, checks

PREDICTION = "prediction"


def prediction_drift(reference_scores: np.ndarray, scores: np.ndarray, decision_threshold: float,
                     bins: int = 10) -> dict[str, float]:
    """Score PSI and positive rates of one set of scores against the reference's."""
    reference = FeatureProfile.of_numbers(PREDICTION, pl.Series(reference_scores, dtype=pl.Float64), bins)
    scores = np.asarray(scores, dtype=np.float64)
    codes = reference.codes(pl.Series(scores))
    counts = drift.counts_by_window(codes, np.zeros(codes.size, dtype=np.int64), 1, reference.counts.size)
    reference_rate = _positive_rate(np.asarray(reference_scores, dtype=np.float64), decision_threshold)
    rate = _positive_rate(scores, decision_threshold)
    return {"psi": float(drift.psi(reference.counts, counts)[0]), "positive_rate": rate,
            "reference_positive_rate": reference_rate, "positive_rate_change": abs(rate - reference_rate)}


def prediction_drift_by_window(reference_scores: np.ndarray, frame: pl.DataFrame, score: str,
                               windows: EventWindows, decision_threshold: float,
                               rules: MonitoringSection) -> pl.DataFrame:
    """Per window: score PSI, predicted positive rate, and its absolute change, as check rows."""
    reference = FeatureProfile.of_numbers(PREDICTION, pl.Series(reference_scores, dtype=pl.Float64),
                                          rules.psi_bins)
    counts = reference.counts_by_window(frame[score], windows)
    rows = counts.sum(axis=1)
    values, window = windows.select(frame[score].cast(pl.Float64).fill_null(np.nan).to_numpy())
    present = ~np.isnan(values)
    positives = np.bincount(window[present], weights=values[present] >= decision_threshold,
                            minlength=windows.count)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = positives / rows
    change = np.abs(rate - _positive_rate(np.asarray(reference_scores, dtype=np.float64), decision_threshold))
    limits, least = rules.prediction, rules.min_window_rows
    return pl.concat([
        checks(windows, PREDICTION, "psi", drift.psi(reference.counts, counts), limits.psi, rows, least),
        checks(windows, PREDICTION, "positive_rate", rate, np.nan, rows, least),
        checks(windows, PREDICTION, "positive_rate_change", change, limits.positive_rate_change, rows, least),
    ])


def _positive_rate(scores: np.ndarray, decision_threshold: float) -> float:
    return float(np.mean(scores >= decision_threshold)) if scores.size else float("nan")

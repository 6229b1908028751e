"""Prediction drift: has the model's output moved, whatever the inputs did?

Each window against the reference's out-of-sample outputs, by task (feature ``prediction``):

- binary: PSI of the score distribution on the reference's quantile bins (``psi``), and the change of
  the predicted positive rate, the share of scores at or above the decision threshold
  (``positive_rate_change``);
- multiclass: PSI of the chosen classes (``psi``); each class's share of the predictions and its absolute
  change (``predicted_rate.<class>``, ``predicted_rate_change.<class>``, as a binary model's positive rate);
  PSI of each class's probability on the reference's quantile bins (``probability_psi.<class>``);
- regression: PSI of the predicted value on the reference's quantile bins (``psi``), its mean (``mean``)
  and the mean's shift in reference standard deviations (``mean_shift``).

Each statistic alerts past the larger of its floor (``[monitoring.prediction]``) and what chance alone
exceeds at the window's and the reference's rows, the prediction's statistics sharing
``drift.false_alarm_rate`` as a feature's do (``feature_drift.drift_checks``).
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import polars as pl

from appliance.monitoring import drift
from appliance.monitoring.feature_drift import FeatureProfile, drift_checks
from appliance.monitoring.reference import PREDICTED, SCORE, proba_columns
from appliance.monitoring.windows import EventWindows, checks
from appliance.spec.monitoring import MonitoringSection
from appliance.task import Task

PREDICTION = "prediction"


def prediction_drift(
    reference_scores: np.ndarray, scores: np.ndarray, decision_threshold: float, bins: int = 10
) -> dict[str, float]:
    """Score PSI and positive rates of one set of scores against the reference's."""
    reference = FeatureProfile.of_numbers(PREDICTION, pl.Series(reference_scores, dtype=pl.Float64), bins)
    scores = np.asarray(scores, dtype=np.float64)
    codes = reference.codes(pl.Series(scores))
    counts = drift.counts_by_window(codes, np.zeros(codes.size, dtype=np.int64), 1, reference.counts.size)
    reference_rate = _positive_rate(np.asarray(reference_scores, dtype=np.float64), decision_threshold)
    rate = _positive_rate(scores, decision_threshold)
    return {
        "psi": float(drift.psi(reference.counts, counts)[0]),
        "positive_rate": rate,
        "reference_positive_rate": reference_rate,
        "positive_rate_change": abs(rate - reference_rate),
    }


def prediction_drift_by_window(
    reference_scores: np.ndarray,
    frame: pl.DataFrame,
    score: str,
    windows: EventWindows,
    decision_threshold: float,
    rules: MonitoringSection,
) -> pl.DataFrame:
    """Per window: score PSI, predicted positive rate, and its absolute change, as check rows."""
    reference = FeatureProfile.of_numbers(PREDICTION, pl.Series(reference_scores, dtype=pl.Float64), rules.psi_bins)
    counts = reference.counts_by_window(frame[score], windows)
    rows = counts.sum(axis=1)
    values, window = windows.select(frame[score].cast(pl.Float64).fill_null(np.nan).to_numpy())
    present = ~np.isnan(values)
    positives = np.bincount(window[present], weights=values[present] >= decision_threshold, minlength=windows.count)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = positives / rows
    scored = np.asarray(reference_scores, dtype=np.float64)
    scored = scored[~np.isnan(scored)]
    reference_positives = int(np.sum(scored >= decision_threshold))
    decisions = np.array([scored.size - reference_positives, reference_positives])  # (negative, positive) rows
    change = np.abs(rate - _positive_rate(scored, decision_threshold))
    alpha = rules.drift.false_alarm_rate / 2
    chance = drift.by_chance([_share_change(1)], decisions, rows, alpha)[0]
    moved = ("positive_rate_change", change, rules.prediction.positive_rate_change, chance)
    return _output_checks(windows, reference, counts, rows, rules, alpha, ("positive_rate", rate), moved)


def task_prediction_drift_by_window(
    reference: pl.DataFrame, frame: pl.DataFrame, task: Task, windows: EventWindows, rules: MonitoringSection
) -> pl.DataFrame:
    """The task's prediction drift per window as check rows; both frames hold the model's output in the
    reference's columns (``_score``; multiclass also ``_predicted_label`` and ``_proba.<index>``)."""
    if task.kind == "binary":
        return prediction_drift_by_window(reference[SCORE].to_numpy(), frame, SCORE, windows, task.threshold, rules)
    if task.kind == "regression":
        return value_drift_by_window(reference[SCORE].to_numpy(), frame, SCORE, windows, rules)
    return class_drift_by_window(reference, frame, task, windows, rules)


def class_drift_by_window(
    reference: pl.DataFrame, frame: pl.DataFrame, task: Task, windows: EventWindows, rules: MonitoringSection
) -> pl.DataFrame:
    """Per window of a multiclass model: PSI of the chosen classes, each class's share of the predictions and
    its absolute change from the reference's, and the PSI of each class's probability."""
    k = len(task.classes)
    reference_counts = np.bincount(_class_codes(reference[PREDICTED], k), minlength=k + 1)[:k]
    counts = drift.counts_by_window(_class_codes(frame[PREDICTED], k), windows.code, windows.count, k)
    rows = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / rows[:, None]
    reference_shares = reference_counts / max(reference_counts.sum(), 1)
    limits, least = rules.prediction, rules.min_window_rows
    alpha = rules.drift.false_alarm_rate / (1 + 2 * k)  # the chosen classes' PSI, and two per class
    # The chosen classes' PSI and each class's share change read one simulation of the class counts.
    chance = drift.by_chance([drift.psi, *(_share_change(i) for i in range(k))], reference_counts, rows, alpha)
    out = [
        drift_checks(
            windows, PREDICTION, "psi", drift.psi(reference_counts, counts), limits.psi, chance[0], rows, least
        )
    ]
    for i, (label, column) in enumerate(zip(task.class_text(), proba_columns(task))):
        probability = FeatureProfile.of_numbers(column, reference[column], rules.psi_bins)
        probability_counts = probability.counts_by_window(frame[column], windows)
        probability_rows = probability_counts.sum(axis=1)
        out += [
            checks(windows, PREDICTION, f"predicted_rate.{label}", shares[:, i], np.nan, rows, least),
            drift_checks(
                windows,
                PREDICTION,
                f"predicted_rate_change.{label}",
                np.abs(shares[:, i] - reference_shares[i]),
                limits.predicted_rate_change,
                chance[1 + i],
                rows,
                least,
            ),
            drift_checks(
                windows,
                PREDICTION,
                f"probability_psi.{label}",
                drift.psi(probability.counts, probability_counts),
                limits.psi,
                drift.by_chance([drift.psi], probability.counts, probability_rows, alpha)[0],
                probability_rows,
                least,
            ),
        ]
    return pl.concat(out)


def value_drift_by_window(
    reference_values: np.ndarray, frame: pl.DataFrame, value: str, windows: EventWindows, rules: MonitoringSection
) -> pl.DataFrame:
    """Per window of a regression model: PSI of the predicted value on the reference's quantile bins, the mean
    value, and its shift from the reference's mean in reference standard deviations."""
    reference_values = np.asarray(reference_values, dtype=np.float64)
    reference_values = reference_values[~np.isnan(reference_values)]
    reference = FeatureProfile.of_numbers(PREDICTION, pl.Series(reference_values, dtype=pl.Float64), rules.psi_bins)
    counts = reference.counts_by_window(frame[value], windows)
    rows = counts.sum(axis=1)
    values, window = windows.select(frame[value].cast(pl.Float64).fill_null(np.nan).to_numpy())
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(window[present], weights=values[present], minlength=windows.count) / rows
        spread = np.std(reference_values, ddof=1) if reference_values.size > 1 else np.nan
        shift = np.abs(mean - np.mean(reference_values)) / spread
        # Both means vary by chance, by sqrt(1/n + 1/m) reference standard deviations (the central limit).
        noise = np.sqrt(1 / rows + 1 / max(reference_values.size, 1))
    alpha = rules.drift.false_alarm_rate / 2
    moved = ("mean_shift", shift, rules.prediction.mean_shift, NormalDist().inv_cdf(1 - alpha / 2) * noise)
    return _output_checks(windows, reference, counts, rows, rules, alpha, ("mean", mean), moved)


def _output_checks(
    windows: EventWindows,
    reference: FeatureProfile,
    counts: np.ndarray,
    rows: np.ndarray,
    rules: MonitoringSection,
    alpha: float,
    level: tuple[str, np.ndarray],
    moved: tuple[str, np.ndarray, float, np.ndarray],
) -> pl.DataFrame:
    """A single output's checks: the PSI of its binned values (``counts``) against the reference's; its
    ``level`` per window (name, values), which never alerts; and how far that level ``moved`` from the
    reference's (name, values, floor, chance value). Both judged past the larger of their floor and what chance
    alone exceeds."""
    (name, values), (moved_name, change, floor, chance) = level, moved
    least = rules.min_window_rows
    psi = drift.psi(reference.counts, counts)
    psi_by_chance = drift.by_chance([drift.psi], reference.counts, rows, alpha)[0]
    return pl.concat(
        [
            drift_checks(windows, PREDICTION, "psi", psi, rules.prediction.psi, psi_by_chance, rows, least),
            checks(windows, PREDICTION, name, values, np.nan, rows, least),
            drift_checks(windows, PREDICTION, moved_name, change, floor, chance, rows, least),
        ]
    )


def _share_change(index: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The statistic |a window's share of bin ``index`` - the reference's|, for ``drift.by_chance``."""

    def change(reference_counts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.abs(counts[:, index] / counts.sum(axis=1) - reference_counts[index] / reference_counts.sum())

    return change


def _class_codes(column: pl.Series, classes: int) -> np.ndarray:
    """Chosen class indices; -1 for a missing one (an error row) or one outside the classes."""
    codes = column.cast(pl.Int64, strict=False).fill_null(-1).to_numpy()
    return np.where((codes >= 0) & (codes < classes), codes, -1)


def _positive_rate(scores: np.ndarray, decision_threshold: float) -> float:
    return float(np.mean(scores >= decision_threshold)) if scores.size else float("nan")

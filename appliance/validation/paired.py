"""Two models' outputs on the same labelled rows: each one's value of a metric, the difference, and a 95 %
interval for the difference that accounts for the rows being shared.

Sharing the rows is the point: both models are right and wrong on many of the same rows, so the difference
varies far less than either value, and two intervals side by side would overstate the doubt. The interval:

- binary AUC: DeLong's (DeLong, DeLong & Clarke-Pearson 1988, in Sun & Xu's midrank form), the variance of
  the difference of two correlated AUCs from each row's structural component; asymptotically normal, cheap
  (one sort per model) at any size;
- every other metric (F1, log loss, macro F1, accuracy, RMSE, MAE, R²): a paired percentile bootstrap, the
  same resampled rows scoring both models, ``RESAMPLES`` times with a fixed seed (the same rows give the
  same interval on every screen). Resamples where the metric is undefined (a class drawn away) are dropped.

``scripts/bench/paired_coverage.py`` measures how often each interval holds the true difference.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from appliance.scoring.metrics import score
from appliance.task import SCALED, Task, higher_is_better

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
RESAMPLES = 400
SEED = 20


class Difference(msgspec.Struct, frozen=True):
    """Candidate and production values of one metric on the same rows, and a 95 % interval for
    candidate − production."""

    metric: str
    candidate: float
    production: float
    low: float  # NaN: no interval (too few rows, or a value undefined on them)
    high: float
    method: str  # how the interval was drawn: "DeLong" or "paired bootstrap, 400 resamples"

    @property
    def value(self) -> float:
        return self.candidate - self.production

    @property
    def verdict(self) -> str:
        """'better', 'worse' or 'no clear difference' (the interval holds 0), in the metric's direction."""
        if math.isnan(self.value):
            return "not comparable"
        if self.value == 0 or (not math.isnan(self.low) and self.low <= 0 <= self.high):
            return "no clear difference"
        return "better" if (self.value > 0) == higher_is_better(self.metric) else "worse"

    def interval_text(self) -> str:
        """'95 % DeLong interval −0.0312 … +0.0104', or why there is none."""
        if math.isnan(self.low):
            return "no interval"
        return f"95 % {self.method} interval {signed(self.metric, self.low)} … {signed(self.metric, self.high)}"


def paired_difference(
    task: Task, metric: str, y: np.ndarray, candidate: np.ndarray, production: np.ndarray
) -> Difference:
    """Both outputs scored on the rows ``y``, with a 95 % interval for the difference (see the module)."""
    y = np.asarray(y)
    c, p = score(task, metric, y, candidate), score(task, metric, y, production)
    if task.kind == "binary" and metric == "auc":
        low, high = delong_interval(y, candidate, production)
        return Difference(metric, c, p, low, high, "DeLong")
    low, high = bootstrap_interval(task, metric, y, candidate, production)
    return Difference(metric, c, p, low, high, f"paired bootstrap, {RESAMPLES} resamples")


def delong_interval(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95 % DeLong interval of AUC(a) − AUC(b) on the same rows; NaN without both classes or with a
    non-finite score."""
    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    scores = np.vstack([np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)])
    if m < 2 or n < 2 or not np.isfinite(scores).all():
        return math.nan, math.nan
    positives, negatives = scores[:, y], scores[:, ~y]
    aucs, v_pos, v_neg = [], [], []
    for k in range(2):
        within_pos, within_neg = _midranks(positives[k]), _midranks(negatives[k])
        together = _midranks(np.concatenate([positives[k], negatives[k]]))
        aucs.append((together[:m].sum() / m - (m + 1) / 2) / n)
        v_pos.append((together[:m] - within_pos) / n)  # each positive's share of negatives ranked below it
        v_neg.append(1 - (together[m:] - within_neg) / m)  # each negative's share of positives ranked above it
    s_pos, s_neg = np.cov(np.vstack(v_pos)), np.cov(np.vstack(v_neg))
    variance = (s_pos[0, 0] + s_pos[1, 1] - 2 * s_pos[0, 1]) / m + (s_neg[0, 0] + s_neg[1, 1] - 2 * s_neg[0, 1]) / n
    difference = aucs[0] - aucs[1]
    half = Z95 * math.sqrt(max(float(variance), 0.0))
    return float(difference - half), float(difference + half)


def bootstrap_interval(
    task: Task, metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """95 % paired percentile bootstrap interval of metric(a) − metric(b): each resample of the rows scores
    both outputs. NaN with fewer than two rows or when fewer than half the resamples give a value."""
    y, a, b = np.asarray(y), np.asarray(a), np.asarray(b)
    if len(y) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(SEED)
    differences = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, len(y), len(y))
        differences[i] = score(task, metric, y[rows], a[rows]) - score(task, metric, y[rows], b[rows])
    differences = differences[np.isfinite(differences)]
    if len(differences) < resamples / 2:
        return math.nan, math.nan
    low, high = np.quantile(differences, [0.025, 0.975])
    return float(low), float(high)


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    boundaries = np.flatnonzero(np.diff(ordered)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(values)]))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def signed(metric: str, value: float) -> str:
    """A difference of a metric with its sign: four decimals, or six significant digits in the target's units."""
    return f"{value:+.6g}" if metric in SCALED else f"{value:+.4f}"

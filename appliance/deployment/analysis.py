"""The math of deployments: canary analysis, the A/B outcome comparison, the shadow report.

Each compares what two versions answered, in the model's task's terms (``appliance.task``): a binary
classifier's probability of class 1, a multiclass classifier's chosen class and class probabilities, a
regression's value. The binary figures are the ones every deployment had before tasks existed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import msgspec
import numpy as np

from appliance.spec import DeploymentSection
from appliance.task import BINARY, Task

# Differences in p99 latency smaller than this are noise on a shared machine, never a verdict.
P99_TOLERANCE_MS = 5.0
Z95 = 1.959963984540054


class ArmSample(msgspec.Struct, frozen=True):
    """One arm's recent predictions: what the successful ones answered, latencies, and failures.

    ``outputs`` are, by task: binary, the probability of class 1; multiclass, the chosen class's index;
    regression, the predicted value.
    """

    outputs: list[float]
    latencies_ms: list[float]
    errors: int

    @property
    def n(self) -> int:
        return len(self.latencies_ms)

    @classmethod
    def from_rows(cls, rows: Sequence, task: Task = BINARY) -> ArmSample:
        """From prediction-log rows of (probability, latency_ms, status, label, value, probabilities)."""
        column = {"binary": 0, "multiclass": 3, "regression": 4}[task.kind]
        return cls([r[column] for r in rows if r[2] == 200 and r[column] is not None],
                   [r[1] for r in rows], sum(1 for r in rows if r[2] >= 500))


class Verdict(msgspec.Struct, frozen=True):
    passed: bool
    reasons: list[str]      # why it failed; empty when it passed
    figures: dict[str, float]


# What the canary's PSI compares, by task, as its verdict names it.
COMPARED = {"binary": "score distribution", "multiclass": "predicted class shares",
            "regression": "predicted value distribution"}


def judge_canary(production: ArmSample, candidate: ArmSample, policy: DeploymentSection,
                 task: Task = BINARY) -> Verdict:
    """Compare the candidate with production on error rate, p99 latency and the distribution of answers.

    The answers compared are the probability of class 1 (binary), the value (regression), both binned
    at production's quantiles; and for multiclass the share of each predicted class. Class shares are
    what a multiclass user sees change; their bins are the classes themselves, so up to 10 classes the
    PSI's noise is at most a binary PSI's. Judging each class's probability instead and taking the worst
    of k PSIs would multiply the chances of rolling back a sound candidate on a small canary sample.
    """
    err_p = production.errors / production.n if production.n else 0.0
    err_c = candidate.errors / candidate.n if candidate.n else 0.0
    p99_p, p99_c = percentile(production.latencies_ms, 99), percentile(candidate.latencies_ms, 99)
    ratio = p99_c / p99_p if p99_p > 0 else 1.0
    if task.kind == "multiclass":
        drift = class_share_psi(production.outputs, candidate.outputs, len(task.classes))
    else:
        drift = psi(production.outputs, candidate.outputs)
    reasons = []
    if err_c - err_p > policy.max_error_rate_increase:
        reasons.append(f"error rate {err_c:.2%} vs production {err_p:.2%} "
                       f"(allowed increase {policy.max_error_rate_increase:.2%})")
    if ratio > policy.max_p99_latency_ratio and p99_c - p99_p > P99_TOLERANCE_MS:
        reasons.append(f"p99 latency {p99_c:.1f} ms is {ratio:.2f}× production's {p99_p:.1f} ms "
                       f"(allowed {policy.max_p99_latency_ratio:g}×)")
    if drift > policy.max_psi:
        reasons.append(f"{COMPARED[task.kind]} PSI {drift:.3f} against production (allowed {policy.max_psi:g})")
    figures = {"production_n": production.n, "candidate_n": candidate.n, "production_error_rate": err_p,
               "candidate_error_rate": err_c, "production_p99_ms": p99_p, "candidate_p99_ms": p99_c,
               "p99_ratio": ratio, "psi": drift}
    return Verdict(not reasons, reasons, figures)


def psi(expected: Sequence[float], actual: Sequence[float], bins: int | None = None) -> float:
    """Population stability index of two score samples, binned at the expected sample's quantiles.

    PSI of two samples of one distribution is about (bins - 1)·(1/n₁ + 1/n₂), so small samples get
    fewer bins (one per 20 rows of the smaller sample, 2 to 10) to keep that noise under ~0.1.
    """
    if not len(expected) or not len(actual):
        return 0.0
    if bins is None:
        bins = max(2, min(10, min(len(expected), len(actual)) // 20))
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    e_share = np.bincount(np.searchsorted(edges, e, side="right"), minlength=len(edges) + 1) / len(e)
    a_share = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
    return _psi_of_shares(e_share, a_share)


def class_share_psi(expected: Sequence[int], actual: Sequence[int], classes: int) -> float:
    """Population stability index of the shares of predicted classes (indices 0..classes-1) in two samples.

    Two samples of one distribution give about (classes - 1)·(1/n₁ + 1/n₂).
    """
    if not len(expected) or not len(actual):
        return 0.0
    return _psi_of_shares(_class_shares(expected, classes), _class_shares(actual, classes))


def _psi_of_shares(e_share: np.ndarray, a_share: np.ndarray) -> float:
    # An empty bin would make the log infinite; a tiny floor keeps one odd bin from dominating.
    e_share, a_share = np.clip(e_share, 1e-4, None), np.clip(a_share, 1e-4, None)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def _class_shares(codes: Sequence[int], classes: int) -> np.ndarray:
    c = np.asarray(codes, dtype=np.int64)
    return np.bincount(c[(c >= 0) & (c < classes)], minlength=classes)[:classes] / len(c)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank above), 0 for no values."""
    if not len(values):
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)])


class ArmOutcomes(msgspec.Struct, frozen=True):
    """A binary arm: the mean outcome (the share of positives) of its predictions with feedback."""

    arm: str
    predictions: int
    with_outcome: int
    mean_outcome: float | None


class ArmAccuracy(msgspec.Struct, frozen=True):
    """A multiclass arm: the share of its predictions with feedback whose class was the outcome."""

    arm: str
    predictions: int
    with_outcome: int
    accuracy: float | None


class ArmError(msgspec.Struct, frozen=True):
    """A regression arm: the mean absolute error of its predictions with feedback."""

    arm: str
    predictions: int
    with_outcome: int
    mae: float | None


class AbReport(msgspec.Struct, frozen=True):
    arms: list[ArmOutcomes]
    difference: float | None        # candidate's mean outcome minus production's
    ci95: tuple[float, float] | None


class MeasuredAbReport(msgspec.Struct, frozen=True):
    """A/B of a multiclass or regression model: each arm's accuracy or MAE, and the candidate's difference."""

    measure: str                    # "accuracy" (multiclass) or "mae" (regression)
    better: str                     # "higher" or "lower": the direction of a difference that favours the candidate
    arms: list[ArmAccuracy] | list[ArmError]
    difference: float | None        # candidate's measure minus production's
    ci95: tuple[float, float] | None


def ab_report(predictions: dict[str, int], outcomes: Sequence[tuple[str, float]]) -> AbReport:
    """Per-arm mean outcome and a 95 % confidence interval (Welch, normal) for the difference."""
    by_arm = _by_arm(outcomes)
    arms = [ArmOutcomes(arm, predictions.get(arm, 0), len(v), float(np.mean(v)) if v else None)
            for arm, v in by_arm.items()]
    return AbReport(arms, *_welch(by_arm["production"], by_arm["candidate"]))


def ab_report_for(task: Task, predictions: dict[str, int], rows: Sequence) -> AbReport | MeasuredAbReport:
    """The A/B comparison in the task's terms, from rows of (arm, outcome, probability, label, value).

    Binary: the mean outcome, as always. Multiclass: accuracy, each prediction scored 1 when its class
    index is the outcome's. Regression: mean absolute error |value - outcome|, lower being better. A row
    without a prediction (a failed request) has nothing to score and is left out. The interval is the
    binary one (Welch, normal) over the per-prediction scores.
    """
    if task.kind == "binary":
        return ab_report(predictions, [(r[0], r[1]) for r in rows])
    if task.kind == "multiclass":
        scored = [(r[0], float(r[3] == r[1])) for r in rows if r[3] is not None]
        arm_type, measure, better = ArmAccuracy, "accuracy", "higher"
    else:
        scored = [(r[0], abs(r[4] - r[1])) for r in rows if r[4] is not None]
        arm_type, measure, better = ArmError, "mae", "lower"
    by_arm = _by_arm(scored)
    arms = [arm_type(arm, predictions.get(arm, 0), len(v), float(np.mean(v)) if v else None)
            for arm, v in by_arm.items()]
    return MeasuredAbReport(measure, better, arms, *_welch(by_arm["production"], by_arm["candidate"]))


def _by_arm(scored: Sequence[tuple[str, float]]) -> dict[str, list[float]]:
    by_arm: dict[str, list[float]] = {"production": [], "candidate": []}
    for arm, value in scored:
        by_arm.setdefault(arm, []).append(value)
    return by_arm


def _welch(a: list[float], b: list[float]) -> tuple[float | None, tuple[float, float] | None]:
    """Mean of b minus mean of a, and its 95 % interval (Welch, normal); none from fewer than 2 rows an arm."""
    if len(a) < 2 or len(b) < 2:
        return None, None
    diff = float(np.mean(b) - np.mean(a))
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return diff, (diff - Z95 * se, diff + Z95 * se)


class ShadowReport(msgspec.Struct, frozen=True):
    pairs: int
    agreement: float | None     # share of rows where both give the same label
    correlation: float | None   # Pearson correlation of the two scores
    production_p50_ms: float
    production_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float


class ClassShadowReport(msgspec.Struct, frozen=True):
    """A multiclass shadow: how often the two versions pick the same class, and how each class's
    probability moved."""

    pairs: int
    agreement: float | None     # share of rows where both pick the same class
    class_psi: dict[str, float]  # per class (as text): PSI of the shadow's probability of it against production's
    production_p50_ms: float
    production_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float


class ValueShadowReport(msgspec.Struct, frozen=True):
    """A regression shadow: how far the shadow's values are from production's on the same rows."""

    pairs: int
    mean_absolute_difference: float | None
    relative_difference: float | None   # that difference over production's mean |value| (none when it is 0)
    correlation: float | None           # Pearson correlation of the two values
    value_psi: float | None             # PSI of the shadow's values on production's quantile bins
    production_p50_ms: float
    production_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float


def shadow_report(rows: Sequence, task: Task = BINARY) -> ShadowReport | ClassShadowReport | ValueShadowReport:
    """From rows of (served, served_label, served_ms, shadow, shadow_label, shadow_ms, served_value,
    shadow_value, served_probabilities, shadow_probabilities), as ``PredictionStore.shadow_pairs`` gives."""
    served_ms = [r[2] for r in rows]
    shadow_ms = [r[5] for r in rows]
    latency = (percentile(served_ms, 50), percentile(served_ms, 99), percentile(shadow_ms, 50),
               percentile(shadow_ms, 99))
    if task.kind == "multiclass":
        return _class_shadow(rows, task, latency)
    if task.kind == "regression":
        return _value_shadow(rows, latency)
    scored = [r for r in rows if r[0] is not None and r[3] is not None]
    agreement = sum(r[1] == r[4] for r in scored) / len(scored) if scored else None
    return ShadowReport(len(scored), agreement, _correlation([r[0] for r in scored], [r[3] for r in scored]),
                        *latency)


def _class_shadow(rows: Sequence, task: Task, latency: tuple[float, ...]) -> ClassShadowReport:
    k = len(task.classes)
    scored = [r for r in rows if r[1] is not None and r[4] is not None]
    agreement = sum(r[1] == r[4] for r in scored) / len(scored) if scored else None
    # Each class's probability needs both versions' full lists; a row logged without them is left out.
    served, shadow = [], []
    for r in scored:
        p, q = _class_probabilities(r[8], k), _class_probabilities(r[9], k)
        if p is not None and q is not None:
            served.append(p)
            shadow.append(q)
    class_psi = {}
    if served:
        p, q = np.array(served), np.array(shadow)
        class_psi = {label: psi(p[:, i], q[:, i]) for i, label in enumerate(task.class_text())}
    return ClassShadowReport(len(scored), agreement, class_psi, *latency)


def _class_probabilities(text: str | None, classes: int) -> list[float] | None:
    """A logged row's probability of each class, or None when it was logged without them."""
    if text is None:
        return None
    values = json.loads(text)
    return values if len(values) == classes else None


def _value_shadow(rows: Sequence, latency: tuple[float, ...]) -> ValueShadowReport:
    scored = [r for r in rows if r[6] is not None and r[7] is not None]
    if not scored:
        return ValueShadowReport(0, None, None, None, None, *latency)
    served = np.array([r[6] for r in scored], dtype=np.float64)
    shadow = np.array([r[7] for r in scored], dtype=np.float64)
    difference = float(np.mean(np.abs(shadow - served)))
    scale = float(np.mean(np.abs(served)))
    return ValueShadowReport(len(scored), difference, difference / scale if scale > 0 else None,
                             _correlation(served, shadow), psi(served, shadow), *latency)


def _correlation(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation of two samples; none for fewer than 2 rows or a constant one."""
    if len(x) < 2:
        return None
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.std() > 0 and y.std() > 0:
        return float(np.corrcoef(x, y)[0, 1])
    return None

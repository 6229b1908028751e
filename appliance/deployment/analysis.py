"""The math of deployments besides the canary's (``canary``): the A/B outcome comparison, the shadow report.

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

from appliance.deployment.canary import percentile, psi
from appliance.task import BINARY, Task

Z95 = 1.959963984540054


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

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


class Arm(msgspec.Struct, frozen=True):
    """An A/B arm: its successful predictions and how many of them have an outcome."""

    arm: str
    predictions: int
    with_outcome: int


class ArmOutcomes(Arm, frozen=True):
    """A binary arm: the mean outcome (the share of positives) of its predictions with feedback."""

    mean_outcome: float | None


class ArmAccuracy(Arm, frozen=True):
    """A multiclass arm: the share of its predictions with feedback whose class was the outcome."""

    accuracy: float | None


class ArmError(Arm, frozen=True):
    """A regression arm: the mean absolute error of its predictions with feedback."""

    mae: float | None


class AbReport(msgspec.Struct, frozen=True):
    arms: list[ArmOutcomes]
    difference: float | None  # candidate's mean outcome minus production's
    ci95: tuple[float, float] | None  # for one look at this sample (Newcombe's score interval)
    always_valid95: tuple[float, float] | None  # holds however often it is looked at (see ``_always_valid``)
    verdict: str = ""  # what the always-valid interval shows, or how many outcomes are missing


class MeasuredAbReport(msgspec.Struct, frozen=True):
    """A/B of a multiclass or regression model: each arm's accuracy or MAE, and the candidate's difference."""

    measure: str  # "accuracy" (multiclass) or "mae" (regression)
    better: str  # "higher" or "lower": the direction of a difference that favours the candidate
    arms: list[ArmAccuracy] | list[ArmError]
    difference: float | None  # candidate's measure minus production's
    ci95: tuple[float, float] | None  # for one look (accuracy: Newcombe; MAE: Welch t)
    always_valid95: tuple[float, float] | None  # holds however often it is looked at
    verdict: str = ""


def ab_report(predictions: dict[str, int], outcomes: Sequence[tuple[str, float]], min_outcomes: int = 2) -> AbReport:
    """Per-arm mean outcome, and the candidate's difference with its intervals once each arm has
    ``min_outcomes`` outcomes (see ``_compare``)."""
    by_arm = _by_arm(outcomes)
    arms = [
        ArmOutcomes(arm, predictions.get(arm, 0), len(v), float(np.mean(v)) if v else None) for arm, v in by_arm.items()
    ]
    return AbReport(arms, *_compare(by_arm["production"], by_arm["candidate"], min_outcomes, "higher"))


def ab_report_for(
    task: Task, predictions: dict[str, int], rows: Sequence, min_outcomes: int = 2
) -> AbReport | MeasuredAbReport:
    """The A/B comparison in the task's terms, from rows of (arm, outcome, probability, label, value).

    Binary: the mean outcome, as always. Multiclass: accuracy, each prediction scored 1 when its class
    index is the outcome's. Regression: mean absolute error |value - outcome|, lower being better. A row
    without a prediction (a failed request) has nothing to score and is left out.
    """
    if task.kind == "binary":
        return ab_report(predictions, [(r[0], r[1]) for r in rows], min_outcomes)
    if task.kind == "multiclass":
        scored = [(r[0], float(r[3] == r[1])) for r in rows if r[3] is not None]
        arm_type, measure, better = ArmAccuracy, "accuracy", "higher"
    else:
        scored = [(r[0], abs(r[4] - r[1])) for r in rows if r[4] is not None]
        arm_type, measure, better = ArmError, "mae", "lower"
    by_arm = _by_arm(scored)
    arms = [
        arm_type(arm, predictions.get(arm, 0), len(v), float(np.mean(v)) if v else None) for arm, v in by_arm.items()
    ]
    return MeasuredAbReport(
        measure, better, arms, *_compare(by_arm["production"], by_arm["candidate"], min_outcomes, better)
    )


def _by_arm(scored: Sequence[tuple[str, float]]) -> dict[str, list[float]]:
    by_arm: dict[str, list[float]] = {"production": [], "candidate": []}
    for arm, value in scored:
        by_arm.setdefault(arm, []).append(value)
    return by_arm


AbFigures = tuple[float | None, tuple[float, float] | None, tuple[float, float] | None, str]


def _compare(a: list[float], b: list[float], min_outcomes: int, better: str) -> AbFigures:
    """Mean of b minus mean of a; its 95 % interval for one look at this sample; its always-valid 95 % interval;
    and the verdict. Below ``min_outcomes`` an arm (at least 2) there is a difference but no interval.

    Outcomes of 0 and 1 (a binary outcome, or a prediction's being right) get Newcombe's hybrid score
    interval (1998, method 10), made for proportions: it keeps its coverage with few outcomes and never
    collapses to zero width when a rare outcome leaves an arm all 0. Other outcomes get Welch's t interval.
    """
    need = max(2, min_outcomes)
    if not a or not b:
        return None, None, None, f"not enough outcomes yet: {len(a):,} and {len(b):,} of {need:,} an arm"
    diff = float(np.mean(b) - np.mean(a))
    if min(len(a), len(b)) < need:
        return diff, None, None, f"not enough outcomes yet: {len(a):,} and {len(b):,} of {need:,} an arm"
    proportions = all(v in (0.0, 1.0) for v in (*a, *b))
    one_look = _newcombe(a, b) if proportions else _welch_t(a, b)
    always = _always_valid(a, b, need, proportions)
    low, high = always
    if low > 0 or high < 0:
        winner = "candidate" if (low > 0) == (better == "higher") else "production"
        verdict = f"{winner} better (the always-valid interval excludes 0)"
    else:
        verdict = "no difference shown yet (the always-valid interval includes 0)"
    return diff, one_look, always, verdict


def _wilson(successes: float, n: int) -> tuple[float, float]:
    z = Z95
    centre = (successes + z * z / 2) / (n + z * z)
    half = z * math.sqrt(successes * (n - successes) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


def _newcombe(a: list[float], b: list[float]) -> tuple[float, float]:
    p1, p2 = float(np.mean(a)), float(np.mean(b))
    l1, u1 = _wilson(sum(a), len(a))
    l2, u2 = _wilson(sum(b), len(b))
    diff = p2 - p1
    return diff - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), diff + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def _welch_t(a: list[float], b: list[float]) -> tuple[float, float]:
    from scipy import stats  # an A/B report is rare; the serving process does not need SciPy loaded

    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    diff = float(np.mean(b) - np.mean(a))
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, dof)) * se
    return diff - half, diff + half


def _always_valid(a: list[float], b: list[float], min_outcomes: int, proportions: bool) -> tuple[float, float]:
    """A 95 % interval for the difference that holds at every look at once: a team may read the report every
    day and stop when it likes without raising its error above 5 %.

    The method is the mixture sequential probability ratio test's confidence sequence (Robbins 1970; Johari
    et al. 2017, "Always valid inference"), with a normal mixture over the effect: half-width
    sqrt(V (V + τ²) / τ² · (log((V + τ²) / V) + 2 log(1/α))), V the difference's variance now. τ² is that
    variance at the minimum sample (``ab_min_outcomes`` an arm), so the interval is tightest for effects the
    minimum sample could show, and widens only like sqrt(log n) beyond. Chosen over a fixed-n interval,
    which, looked at daily, declares a winner between two identical arms far more often than 5 %; and over a
    group-sequential design, which needs the number of looks fixed in advance. Proportions use a variance
    smoothed by half an outcome, so an arm of all 0 still has a width.
    """

    def variance(values: list[float]) -> float:
        if proportions:
            p = (sum(values) + 0.5) / (len(values) + 1)
            return p * (1 - p)
        return float(np.var(values, ddof=1))

    var_a, var_b = variance(a), variance(b)
    v = var_a / len(a) + var_b / len(b)
    tau2 = (var_a + var_b) / min_outcomes
    diff = float(np.mean(b) - np.mean(a))
    if v == 0:
        return diff, diff
    half = math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) + 2 * math.log(1 / 0.05)))
    return diff - half, diff + half


class ShadowReport(msgspec.Struct, frozen=True):
    pairs: int
    agreement: float | None  # share of rows where both give the same label
    correlation: float | None  # Pearson correlation of the two scores
    production_p50_ms: float
    production_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float


class ClassShadowReport(msgspec.Struct, frozen=True):
    """A multiclass shadow: how often the two versions pick the same class, and how each class's
    probability moved."""

    pairs: int
    agreement: float | None  # share of rows where both pick the same class
    class_psi: dict[str, float]  # per class (as text): PSI of the shadow's probability of it against production's
    production_p50_ms: float
    production_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float


class ValueShadowReport(msgspec.Struct, frozen=True):
    """A regression shadow: how far the shadow's values are from production's on the same rows."""

    pairs: int
    mean_absolute_difference: float | None
    relative_difference: float | None  # that difference over production's mean |value| (none when it is 0)
    correlation: float | None  # Pearson correlation of the two values
    value_psi: float | None  # PSI of the shadow's values on production's quantile bins
    production_p50_ms: float
    production_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float


def shadow_report(rows: Sequence, task: Task = BINARY) -> ShadowReport | ClassShadowReport | ValueShadowReport:
    """From rows of (served, served_label, served_ms, shadow, shadow_label, shadow_ms, served_value,
    shadow_value, served_probabilities, shadow_probabilities), as ``PredictionStore.shadow_pairs`` gives."""
    served_ms = [r[2] for r in rows]
    shadow_ms = [r[5] for r in rows]
    latency = (
        percentile(served_ms, 50),
        percentile(served_ms, 99),
        percentile(shadow_ms, 50),
        percentile(shadow_ms, 99),
    )
    if task.kind == "multiclass":
        return _class_shadow(rows, task, latency)
    if task.kind == "regression":
        return _value_shadow(rows, latency)
    scored = [r for r in rows if r[0] is not None and r[3] is not None]
    agreement = sum(r[1] == r[4] for r in scored) / len(scored) if scored else None
    return ShadowReport(len(scored), agreement, _correlation([r[0] for r in scored], [r[3] for r in scored]), *latency)


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
    return ValueShadowReport(
        len(scored),
        difference,
        difference / scale if scale > 0 else None,
        _correlation(served, shadow),
        psi(served, shadow),
        *latency,
    )


def _correlation(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation of two samples; none for fewer than 2 rows or a constant one."""
    if len(x) < 2:
        return None
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.std() > 0 and y.std() > 0:
        return float(np.corrcoef(x, y)[0, 1])
    return None

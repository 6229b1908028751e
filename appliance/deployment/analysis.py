"""The math of deployments: canary analysis, the A/B outcome comparison, the shadow report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from appliance.spec import DeploymentSection

# Differences in p99 latency smaller than this are noise on a shared machine, never a verdict.
P99_TOLERANCE_MS = 5.0
Z95 = 1.959963984540054


class ArmSample(msgspec.Struct, frozen=True):
    """One arm's recent predictions: scores of the successful ones, latencies, and failures."""

    scores: list[float]
    latencies_ms: list[float]
    errors: int

    @property
    def n(self) -> int:
        return len(self.latencies_ms)

    @classmethod
    def from_rows(cls, rows: Sequence) -> "ArmSample":
        """From prediction-log rows of (probability, latency_ms, status)."""
        return cls([r[0] for r in rows if r[2] == 200 and r[0] is not None],
                   [r[1] for r in rows], sum(1 for r in rows if r[2] >= 500))


class Verdict(msgspec.Struct, frozen=True):
    passed: bool
    reasons: list[str]      # why it failed; empty when it passed
    figures: dict[str, float]


def judge_canary(production: ArmSample, candidate: ArmSample, policy: DeploymentSection) -> Verdict:
    """Compare the candidate with production on error rate, p99 latency and score distribution."""
    err_p = production.errors / production.n if production.n else 0.0
    err_c = candidate.errors / candidate.n if candidate.n else 0.0
    p99_p, p99_c = percentile(production.latencies_ms, 99), percentile(candidate.latencies_ms, 99)
    ratio = p99_c / p99_p if p99_p > 0 else 1.0
    drift = psi(production.scores, candidate.scores)
    reasons = []
    if err_c - err_p > policy.max_error_rate_increase:
        reasons.append(f"error rate {err_c:.2%} vs production {err_p:.2%} "
                       f"(allowed increase {policy.max_error_rate_increase:.2%})")
    if ratio > policy.max_p99_latency_ratio and p99_c - p99_p > P99_TOLERANCE_MS:
        reasons.append(f"p99 latency {p99_c:.1f} ms is {ratio:.2f}× production's {p99_p:.1f} ms "
                       f"(allowed {policy.max_p99_latency_ratio:g}×)")
    if drift > policy.max_psi:
        reasons.append(f"score distribution PSI {drift:.3f} against production (allowed {policy.max_psi:g})")
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
    # An empty bin would make the log infinite; a tiny floor keeps one odd bin from dominating.
    e_share = np.clip(e_share, 1e-4, None)
    a_share = np.clip(a_share, 1e-4, None)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank above), 0 for no values."""
    if not len(values):
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)])


class ArmOutcomes(msgspec.Struct, frozen=True):
    arm: str
    predictions: int
    with_outcome: int
    mean_outcome: float | None


class AbReport(msgspec.Struct, frozen=True):
    arms: list[ArmOutcomes]
    difference: float | None        # candidate's mean outcome minus production's
    ci95: tuple[float, float] | None


def ab_report(predictions: dict[str, int], outcomes: Sequence[tuple[str, float]]) -> AbReport:
    """Per-arm mean outcome and a 95 % confidence interval (Welch, normal) for the difference."""
    by_arm: dict[str, list[float]] = {"production": [], "candidate": []}
    for arm, outcome in outcomes:
        by_arm.setdefault(arm, []).append(outcome)
    arms = [ArmOutcomes(arm, predictions.get(arm, 0), len(v), float(np.mean(v)) if v else None)
            for arm, v in by_arm.items()]
    a, b = by_arm["production"], by_arm["candidate"]
    if len(a) < 2 or len(b) < 2:
        return AbReport(arms, None, None)
    diff = float(np.mean(b) - np.mean(a))
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return AbReport(arms, diff, (diff - Z95 * se, diff + Z95 * se))


class ShadowReport(msgspec.Struct, frozen=True):
    pairs: int
    agreement: float | None     # share of rows where both give the same label
    correlation: float | None   # Pearson correlation of the two scores
    production_p50_ms: float
    production_p99_ms: float
    shadow_p50_ms: float
    shadow_p99_ms: float


def shadow_report(rows: Sequence) -> ShadowReport:
    """From rows of (served, served_label, served_ms, shadow, shadow_label, shadow_ms)."""
    scored = [r for r in rows if r[0] is not None and r[3] is not None]
    agreement = sum(r[1] == r[4] for r in scored) / len(scored) if scored else None
    correlation = None
    if len(scored) >= 2:
        x = np.array([r[0] for r in scored])
        y = np.array([r[3] for r in scored])
        if x.std() > 0 and y.std() > 0:
            correlation = float(np.corrcoef(x, y)[0, 1])
    served_ms = [r[2] for r in rows]
    shadow_ms = [r[5] for r in rows]
    return ShadowReport(len(scored), agreement, correlation, percentile(served_ms, 50), percentile(served_ms, 99),
                        percentile(shadow_ms, 50), percentile(shadow_ms, 99))

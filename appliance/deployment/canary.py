"""Canary analysis: whether a candidate serving part of the traffic is worse than production, with a stated
chance of being wrong.

A canary is judged once per step below 100 % (the spec's ``canary_steps``), on every prediction each arm
has answered since the canary began, once the step has ``min_sample`` new predictions an arm. Three rules can
roll it back:

- **errors**: the candidate's share of failed requests (5xx) is higher than production's, by more than
  ``max_error_rate_increase`` and beyond chance. Chance is an exact one-sided test: given the failures of
  both arms, how often would the candidate hold at least its share of them if both failed alike (a binomial
  split by the arms' sizes, conditional on the total: valid at zero failures and for arms of any size).
- **latency**: the candidate is slower than ``max_p99_latency_ratio`` times production, on either of two
  measures, each with a confidence bound: the geometric mean ratio (every request; a Welch interval on the
  log latencies, which turns heavy right tails into a near-normal spread), and the p99 ratio (the tail;
  distribution-free bounds from order statistics: the candidate's p99 at least, production's at most).
  Either must also make the p99 at least ``P99_TOLERANCE_MS`` slower: a shared machine's sub-millisecond
  differences are never a verdict.
- **answers**: the candidate answers live as it answered when it was evaluated. Its live answers (score,
  class shares or values) are compared with its own answers on its held-out evaluation rows (its monitoring
  reference), not with production's live answers: a retrain after drift is meant to answer differently from
  the version it replaces, and the gates judged that difference on labelled rows. What a canary must catch
  is training-serving skew (a broken or stale feature, a constant or inverted output). Traffic that moved
  since the evaluation moves every model's answers, so production's live answers are compared with its own
  evaluation answers the same way (PSI_p, on as many bins): the candidate fails when its PSI exceeds
  PSI_p + ``max_psi``, and the PSI a candidate whose answers truly moved PSI_p reaches by chance where that
  is larger (about a noncentral χ²₍bins-1₎ · (1/n₁ + 1/n₂); see ``psi_by_chance``: a true shift widens the
  spread). PSI_p is an allowance, not an estimate of the traffic's
  effect on the candidate (production's evaluation rows are older, so it tends to be larger): it errs
  toward keeping a candidate, and the further production has drifted, the larger a skew must be to be seen.
  Without both versions' evaluation answers (a version registered before references were stored, or
  trained for another task than the spec's), the candidate's live answers are compared with production's
  live answers instead, beyond ``max_psi`` and chance, and the verdict says why.

The chance of rolling back a candidate no worse than production over a whole canary is at most ``ALPHA``:
each rule at each judged step is tested at ALPHA / (steps × 3) (Bonferroni; the steps' samples are nested,
so the real rate is lower). ``scripts/bench/canary_power.py`` simulates it: an identical candidate survives
a full canary ≥ 95 % of the time at 0-2 % base error rates with heavy-tailed latency, and one with 2×
latency or 3 more points of errors is rolled back ≥ 90 % of the time by 1,000 predictions.
``scripts/bench/canary_answers.py`` simulates the answers rule: a sound retrain whose answers differ from
production's by PSI 0.3 survives ≥ 97 % of the time (the comparison with production's answers: under 1 %),
and one whose live answers moved PSI 1 from its evaluation is rolled back ≥ 99.9 %; a PSI-0.5 skew is
caught ≥ 98 % of the time while production's own answers moved at most 0.1, under 70 % when they moved 0.3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import NamedTuple

import msgspec
import numpy as np

from appliance.spec import DeploymentSection
from appliance.task import BINARY, Task

ALPHA = 0.05  # the chance a whole canary rolls back a candidate no worse than production, at most
RULES = 3  # errors, latency, answers: ALPHA is shared among them and the judged steps
P99_TOLERANCE_MS = 5.0  # a p99 less slower than this is noise on a shared machine, never a verdict
_NORMAL = NormalDist()


class ArmSample(msgspec.Struct, frozen=True):
    """One arm's predictions: what the successful ones answered, and per request its latency and whether it
    failed.

    ``outputs`` are, by task: binary, the probability of class 1; multiclass, the chosen class's index;
    regression, the predicted value: one per record. Latency and failure are a request's: every record of a
    list request is logged with the request's one latency and status, and counted as many times they would
    make one stalled 50-record list look like 50 slow requests (the rules' error rates assume independent
    requests).
    """

    outputs: list[float]
    latencies_ms: list[float]
    errors: int

    @property
    def n(self) -> int:
        """Requests (a list request is one)."""
        return len(self.latencies_ms)

    @classmethod
    def from_rows(cls, rows: Sequence, task: Task = BINARY) -> ArmSample:
        """From prediction-log rows of (probability, latency_ms, status, label, value, probabilities, position)."""
        column = {"binary": 0, "multiclass": 3, "regression": 4}[task.kind]
        requests = [r for r in rows if r[6] == 0]
        return cls(
            [r[column] for r in rows if r[2] == 200 and r[column] is not None],
            [r[1] for r in requests],
            sum(1 for r in requests if r[2] >= 500),
        )


class Verdict(msgspec.Struct, frozen=True):
    passed: bool
    reasons: list[str]  # why it failed; empty when it passed
    figures: dict[str, float]
    answers_against: str = ""  # what the candidate's live answers were compared with, and why if not its own


class Evaluated(NamedTuple):
    """What each version answered on its own held-out evaluation rows (its monitoring reference), in the
    form of ``ArmSample.outputs``: what each arm's live answers are judged against."""

    production: Sequence[float]
    candidate: Sequence[float]


NOT_EVALUATED = "no evaluation answers were given"  # judge_canary's fallback when its caller has none


# What the canary's PSI compares, by task, as its verdict names it.
COMPARED = {
    "binary": "score distribution",
    "multiclass": "predicted class shares",
    "regression": "predicted value distribution",
}


def judged_steps(policy: DeploymentSection) -> int:
    """How many times a canary is judged: once per step below 100 %."""
    return max(1, sum(1 for step in policy.canary_steps if step < 100))


class _Judging(NamedTuple):
    """What each rule reads: both arms, the policy and task, and the rule's share of alpha; each adds the
    figures it measured."""

    production: ArmSample
    candidate: ArmSample
    policy: DeploymentSection
    task: Task
    alpha: float
    figures: dict[str, float]
    evaluated: Evaluated | str  # both versions' evaluation answers, or why there are none


def judge_canary(
    production: ArmSample,
    candidate: ArmSample,
    policy: DeploymentSection,
    task: Task = BINARY,
    evaluated: Evaluated | str = NOT_EVALUATED,
) -> Verdict:
    """Compare the candidate with production on errors and latency, and its answers with its own evaluation
    answers (``evaluated``; a text says why there are none, and the answers are compared with production's);
    see the module's notes."""
    alpha = ALPHA / (judged_steps(policy) * RULES)
    reasons: list[str] = []
    figures: dict[str, float] = {"production_n": production.n, "candidate_n": candidate.n, "alpha": alpha}
    judging = _Judging(production, candidate, policy, task, alpha, figures, evaluated)
    for rule in (_errors, _latency, _answers):
        reason = rule(judging)
        if reason:
            reasons.append(reason)
    against = "its own evaluation answers" if isinstance(evaluated, Evaluated) else f"production's ({evaluated})"
    return Verdict(not reasons, reasons, figures, against)


def _errors(judging: _Judging) -> str | None:
    production, candidate, policy, _, alpha, figures, _ = judging
    err_p = production.errors / production.n if production.n else 0.0
    err_c = candidate.errors / candidate.n if candidate.n else 0.0
    p = more_failures_p(production.errors, production.n, candidate.errors, candidate.n)
    figures.update(production_error_rate=err_p, candidate_error_rate=err_c, error_p_value=p)
    if err_c - err_p > policy.max_error_rate_increase and p < alpha:
        return (
            f"error rate {err_c:.2%} ({candidate.errors:,} of {candidate.n:,}) vs production {err_p:.2%} "
            f"({production.errors:,} of {production.n:,}): {100 * (err_c - err_p):+.2f} points, more than the "
            f"allowed {100 * policy.max_error_rate_increase:.2f}, and p = {p:.2g} < {alpha:.2g} "
            f"(one-sided exact test)"
        )
    return None


def _latency(judging: _Judging) -> str | None:
    production, candidate, policy, _, alpha, figures, _ = judging
    p99_p, p99_c = percentile(production.latencies_ms, 99), percentile(candidate.latencies_ms, 99)
    figures.update(production_p99_ms=p99_p, candidate_p99_ms=p99_c, p99_ratio=p99_c / p99_p if p99_p > 0 else 1.0)
    if production.n < 2 or candidate.n < 2:
        return None
    # Two measures share the rule's alpha; the p99's two bounds share its half.
    ratio, mean_bound = geometric_mean_ratio(production.latencies_ms, candidate.latencies_ms, alpha / 2)
    low_c = quantile_bound(candidate.latencies_ms, 0.99, alpha / 4, lower=True)
    high_p = quantile_bound(production.latencies_ms, 0.99, alpha / 4, lower=False)
    p99_bound = low_c / high_p if high_p > 0 and math.isfinite(high_p) else 0.0
    figures.update(latency_ratio=ratio, latency_ratio_bound=mean_bound, p99_ratio_bound=p99_bound)
    limit = policy.max_p99_latency_ratio
    if p99_c - p99_p <= P99_TOLERANCE_MS or max(mean_bound, p99_bound) <= limit:
        return None
    confidence = f"{1 - alpha / 2:.2%}"
    if mean_bound > limit:
        return (
            f"latency {ratio:.2f}× production's (geometric mean of {candidate.n:,} vs {production.n:,} "
            f"requests; at least {mean_bound:.2f}× at {confidence} confidence), over the allowed {limit:g}×; "
            f"p99 {p99_c:.1f} vs {p99_p:.1f} ms"
        )
    return (
        f"p99 latency {p99_c:.1f} ms vs production's {p99_p:.1f} ms: at least {p99_bound:.2f}× at "
        f"{confidence} confidence ({candidate.n:,} vs {production.n:,} requests), over the allowed {limit:g}×"
    )


def _answers(judging: _Judging) -> str | None:
    production, candidate, policy, task, alpha, figures, evaluated = judging
    if not isinstance(evaluated, Evaluated):
        return _answers_against_production(judging, evaluated)
    drift, bins = _answer_psi(evaluated.candidate, candidate.outputs, task)
    production_drift, _ = _answer_psi(evaluated.production, production.outputs, task, bins)
    # As far as production's answers moved, and its spread at these sample sizes, is the traffic's doing.
    chance = psi_by_chance(bins, len(evaluated.candidate), len(candidate.outputs), alpha, production_drift)
    allowed = max(production_drift + policy.max_psi, chance)
    figures.update(psi=drift, psi_allowed=allowed, production_psi=production_drift)
    if drift > allowed:
        by_chance = f"; {chance:.3f} by chance" if chance > production_drift + policy.max_psi else ""
        return (
            f"{COMPARED[task.kind]} PSI {drift:.3f} against its own evaluation answers "
            f"({len(candidate.outputs):,} live vs {len(evaluated.candidate):,} evaluation answers), allowed "
            f"{allowed:.3f}: production's own answers moved {production_drift:.3f} from its evaluation answers, "
            f"plus {policy.max_psi:g}{by_chance}"
        )
    return None


def _answers_against_production(judging: _Judging, why: str) -> str | None:
    """The answers rule without evaluation answers: the candidate's live answers against production's."""
    production, candidate, policy, task, alpha, figures, _ = judging
    drift, bins = _answer_psi(production.outputs, candidate.outputs, task)
    chance = psi_by_chance(bins, len(production.outputs), len(candidate.outputs), alpha)
    allowed = max(policy.max_psi, chance)
    figures.update(psi=drift, psi_allowed=allowed)
    if drift > allowed:
        by_chance = f", and {chance:.3f} by chance" if chance > policy.max_psi else ""
        return (
            f"{COMPARED[task.kind]} PSI {drift:.3f} against production ({len(candidate.outputs):,} vs "
            f"{len(production.outputs):,} answers; allowed {policy.max_psi:g}{by_chance}; {why})"
        )
    return None


def _answer_psi(
    expected: Sequence[float], actual: Sequence[float], task: Task, bins: int | None = None
) -> tuple[float, int]:
    """The PSI of two samples of a task's answers and the bins it used: class shares for multiclass, else
    the values on ``bins`` quantile bins of ``expected`` (by default as many as the samples' sizes allow)."""
    if task.kind == "multiclass":
        return class_share_psi(expected, actual, len(task.classes)), len(task.classes)
    if bins is None:
        return psi_with_bins(expected, actual)
    return psi(expected, actual, bins), bins


def more_failures_p(failed_p: int, n_p: int, failed_c: int, n_c: int) -> float:
    """One-sided p-value that the candidate fails more often than production: given the total failures, the
    chance the candidate holds at least ``failed_c`` of them when each failure falls on an arm in proportion
    to its requests."""
    total = failed_p + failed_c
    if total == 0 or n_c == 0 or n_p == 0:
        return 1.0
    return binomial_sf(failed_c, total, n_c / (n_p + n_c))


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(min(1.0, _binomial_pmf(n, p)[k:].sum()))


def _binomial_pmf(n: int, p: float) -> np.ndarray:
    """P(X = k) for k = 0..n, computed in log space (exact for any n this analysis sees)."""
    if p <= 0 or p >= 1:
        pmf = np.zeros(n + 1)
        pmf[0 if p <= 0 else n] = 1.0
        return pmf
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    ks = np.arange(n + 1, dtype=np.float64)
    log_pmf = log_factorial[n] - log_factorial - log_factorial[::-1] + ks * math.log(p) + (n - ks) * math.log1p(-p)
    return np.exp(log_pmf)


def geometric_mean_ratio(
    production_ms: Sequence[float], candidate_ms: Sequence[float], alpha: float
) -> tuple[float, float]:
    """The candidate's latency over production's as a ratio of geometric means, and its one-sided lower
    confidence bound at 1 - alpha (Welch on the log latencies)."""
    log_p = np.log(np.maximum(np.asarray(production_ms, dtype=np.float64), 1e-3))
    log_c = np.log(np.maximum(np.asarray(candidate_ms, dtype=np.float64), 1e-3))
    difference = float(log_c.mean() - log_p.mean())
    se = math.sqrt(log_p.var(ddof=1) / len(log_p) + log_c.var(ddof=1) / len(log_c))
    return math.exp(difference), math.exp(difference - _NORMAL.inv_cdf(1 - alpha) * se)


def quantile_bound(values: Sequence[float], q: float, alpha: float, lower: bool) -> float:
    """A distribution-free one-sided confidence bound at 1 - alpha for the q-quantile, from order statistics:
    the k-th smallest value lies below the quantile with probability P(Binomial(n, q) ≥ k). A lower bound
    needs no more than the sample (0 when too small); an upper bound may need more (then infinite)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    if not n:
        return 0.0 if lower else math.inf
    at_least = np.cumsum(_binomial_pmf(n, q)[::-1])[::-1][1:]  # P(Binomial(n, q) ≥ k) for k = 1..n
    if lower:
        ok = np.nonzero(at_least >= 1 - alpha)[0]
        return float(ordered[ok[-1]]) if len(ok) else 0.0
    ok = np.nonzero(at_least <= alpha)[0]  # P(X ≤ k - 1) ≥ 1 - alpha ⇔ P(X ≥ k) ≤ alpha
    return float(ordered[ok[0]]) if len(ok) else math.inf


def psi_with_bins(expected: Sequence[float], actual: Sequence[float]) -> tuple[float, int]:
    """``psi`` and the number of bins it used."""
    if not len(expected) or not len(actual):
        return 0.0, 1
    bins = max(2, min(10, min(len(expected), len(actual)) // 20))
    edges = np.unique(np.quantile(np.asarray(expected, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1]))
    return psi(expected, actual, bins), len(edges) + 1


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


def psi_by_chance(bins: int, n_expected: int, n_actual: int, alpha: float, shift: float = 0.0) -> float:
    """The PSI two samples exceed with probability alpha when their distributions differ by PSI ``shift``
    (0: one distribution). PSI is close to a Pearson χ² statistic with bins - 1 degrees of freedom scaled by
    s = 1/n₁ + 1/n₂, noncentral with λ = shift / s when the distributions differ: its spread grows with the
    shift. The quantile by Patnaik's approximation (c · χ²₍ν₎, c = (k + 2λ)/(k + λ), ν = (k + λ)²/(k + 2λ);
    the central one at λ = 0) and Wilson–Hilferty."""
    if bins < 2 or not n_expected or not n_actual:
        return 0.0
    scale = 1 / n_expected + 1 / n_actual
    dof, noncentrality = bins - 1, max(0.0, shift) / scale
    factor = (dof + 2 * noncentrality) / (dof + noncentrality)
    nu = (dof + noncentrality) ** 2 / (dof + 2 * noncentrality)
    z = _NORMAL.inv_cdf(1 - alpha)
    chi2 = nu * (1 - 2 / (9 * nu) + z * math.sqrt(2 / (9 * nu))) ** 3
    return factor * chi2 * scale


def class_share_psi(expected: Sequence[float], actual: Sequence[float], classes: int) -> float:
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


def _class_shares(codes: Sequence[float], classes: int) -> np.ndarray:
    c = np.asarray(codes, dtype=np.int64)
    return np.bincount(c[(c >= 0) & (c < classes)], minlength=classes)[:classes] / len(c)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank above), 0 for no values."""
    if not len(values):
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)])

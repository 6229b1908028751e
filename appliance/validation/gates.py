"""The gates a new version is checked against; thresholds come from the model's spec.

The pipeline gathers the evidence (``GateEvidence``); the rules here only judge it, so each
rule is plain arithmetic that can be tested on its own.

Every task is judged on its chosen metric (``[validation] metric``, default AUC, macro F1 or RMSE), in the
direction that metric improves. Metrics in the target's units (RMSE, MAE: ``task.SCALED``) are judged as
shares: a regression against production as (value − production) / production, a segment gap as the gap
over the overall value. The gates, in report order:

- ``min_<metric>`` / ``max_<metric>``: the metric on the evaluation rows within ``min_metric`` / ``max_metric``
  (a binary model judged by AUC: ``min_auc`` unless ``min_metric`` is set, as before; otherwise a bound not set
  is not judged);
- ``beats_baseline``: every model except a binary one judged by AUC (whose ``min_auc`` is that bar) must beat a
  model that knows nothing — the class shares or the mean for every row — on the same rows, so a regression
  with no bound set still cannot pass with R² ≤ 0;
- ``min_recall`` (binary): recall at the spec's precision;
- ``no_regression``: no worse than the production version on the same rows (this run's evaluation rows, scored
  by production's own ONNX model), by at most ``max_regression``; the detail names the rows and gives a 95 %
  interval of the difference (``paired``), which says whether the difference is more than chance. Where
  production cannot score those rows (its features differ, its model fails), against its recorded metric on its
  own evaluation rows, and the detail says so;
- ``segment_gap_<column>``: the metric's spread between segments, at most ``max_segment_gap``;
- ``onnx_parity``: the exported model against the native one. Classifiers: the largest absolute probability
  gap. Regression: the largest value gap relative to the values' root mean square (``onnx_model.parity``),
  so a price in the thousands and a rate below one are held to the same relative bar;
- ``latency_p99`` and ``robustness``.
"""

from __future__ import annotations

import math

import msgspec

from appliance.scoring.metrics import format_value
from appliance.spec import ValidationSection
from appliance.task import SCALED, TaskKind, higher_is_better, metric_label
from appliance.validation.paired import Difference
from appliance.validation.probes import SegmentScore


class GateCheck(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str
    applicable: bool = True  # False: the gate does not apply to this version (it neither passes nor blocks)

    @property
    def verdict(self) -> str:
        """How a person reads it: pass, FAIL, or n/a for a gate that does not apply."""
        return "n/a" if not self.applicable else "pass" if self.passed else "FAIL"


class GateReport(msgspec.Struct, frozen=True):
    passed: bool
    checks: list[GateCheck]
    # The ONNX Runtime provider the latency probe ran on; unset in a report recorded before it was named.
    latency_provider: str | msgspec.UnsetType = msgspec.UNSET

    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


class GateEvidence(msgspec.Struct, frozen=True, kw_only=True):
    value: float  # the chosen metric on the evaluation rows
    parity_diff: float | None  # None: no native model to compare (an outside ONNX file)
    p99_ms: float
    robustness_probes: int
    robustness_failures: list[str]
    task: TaskKind = "binary"
    metric: str = "auc"  # the metric ``value`` and the segments are measured in
    recall_at_precision: float | None = None  # binary: recall at the spec's precision (min_recall)
    baseline_value: float | None = None  # the metric of a model that knows nothing, same rows
    segments: dict[str, dict[str, SegmentScore]] = {}  # segment column -> value -> score
    production_version: int | None = None
    production_value: float | None = None  # the production version on the same evaluation rows (NaN: not scored)
    # Where production could not score them (production_value NaN): why (its features differ, its model failed),
    # and its metric on its own evaluation rows from the registry (None: none recorded). Unset otherwise, and in
    # evidence recorded before they were named.
    production_unscored: str | msgspec.UnsetType = msgspec.UNSET
    production_recorded: float | msgspec.UnsetType | None = msgspec.UNSET
    # The provider p99_ms was measured on (probes.single_row_latency); unset in evidence recorded before it
    # was named, when the probe always ran on the CPU.
    latency_provider: str | msgspec.UnsetType = msgspec.UNSET

    @property
    def judged_by_auc(self) -> bool:
        """A binary model judged by AUC: its gates are the ones every spec had before tasks."""
        return self.task == "binary" and self.metric == "auc"


class SameRows(msgspec.Struct, frozen=True):
    """How the candidate and production compared: the rows both were scored on, and the difference there."""

    rows: str  # "this run's evaluation days 2026-10-11..2026-10-20, 5,600 rows"
    difference: Difference  # candidate − production, with its 95 % interval


def evaluate_gates(rules: ValidationSection, e: GateEvidence, compared: SameRows | None = None) -> GateReport:
    """Every gate, passed or not: thresholds, baseline, regression, segment gap, parity, latency, robustness.
    ``compared``: the rows production was scored on and the interval of the difference, which the
    no_regression gate names."""
    checks = _bounds(rules, e)
    if not e.judged_by_auc:
        checks.append(_beats_baseline(e))
    if e.task == "binary":
        recall = math.nan if e.recall_at_precision is None else e.recall_at_precision
        checks.append(
            _at_least(
                "min_recall",
                recall,
                rules.min_recall,
                f"recall {recall:.3f} at precision ≥ {rules.recall_at_precision}",
            )
        )
    checks += [
        _regression(rules, e, compared),
        *(_segment_gap(rules, e, column, scores) for column, scores in e.segments.items()),
        _parity(rules, e),
        _at_most(
            "latency_p99",
            e.p99_ms,
            rules.max_p99_ms,
            f"p99 single-row ONNX inference on {e.latency_provider or 'CPUExecutionProvider'}: {e.p99_ms:.3f} ms",
            "{} ms",
        ),
        GateCheck(
            "robustness",
            not e.robustness_failures,
            float(len(e.robustness_failures)),
            0.0,
            f"{e.robustness_probes} probes (missing and out-of-range features): "
            + (
                VALID_ANSWER[e.task]
                if not e.robustness_failures
                else f"{len(e.robustness_failures)} bad — " + "; ".join(e.robustness_failures[:5])
            ),
        ),
    ]
    return GateReport(all(c.passed for c in checks), checks, e.latency_provider)


VALID_ANSWER = {
    "binary": "every answer a probability",
    "multiclass": "every answer a probability per class, summing to 1",
    "regression": "every answer a finite number",
}
KNOWS_NOTHING = {"binary": "the positive rate", "multiclass": "the class shares", "regression": "the mean"}


def _bounds(rules: ValidationSection, e: GateEvidence) -> list[GateCheck]:
    what = f"evaluation {metric_label(e.metric)} {format_value(e.metric, e.value)}"
    low = rules.min_auc if e.judged_by_auc and rules.min_metric is None else rules.min_metric
    checks = []
    if low is not None:
        checks.append(_at_least(f"min_{e.metric}", e.value, low, what))
    if rules.max_metric is not None:
        checks.append(_at_most(f"max_{e.metric}", e.value, rules.max_metric, what, "{}"))
    return checks


def _beats_baseline(e: GateEvidence) -> GateCheck:
    name, base = metric_label(e.metric), e.baseline_value
    knows_nothing = f"a model that answers {KNOWS_NOTHING[e.task]} for every row"
    if base is None or math.isnan(base):
        return GateCheck(
            "beats_baseline",
            True,
            e.value,
            math.nan,
            f"not judged: {name} of {knows_nothing} "
            + ("was not measured" if base is None else "is undefined on these rows"),
            applicable=False,
        )
    higher = higher_is_better(e.metric)
    ok = bool(e.value > base if higher else e.value < base)  # NaN fails
    return GateCheck(
        "beats_baseline",
        ok,
        e.value,
        base,
        f"{name} {format_value(e.metric, e.value)} {'beats' if ok else 'does not beat'} "
        f"{format_value(e.metric, base)} of {knows_nothing} on the same rows "
        f"({'higher' if higher else 'lower'} is better)",
    )


def _at_least(name: str, value: float, threshold: float, what: str) -> GateCheck:
    ok = bool(value >= threshold)  # NaN fails
    return GateCheck(name, ok, value, threshold, f"{what} {'≥' if ok else '<'} {threshold}")


def _at_most(name: str, value: float, threshold: float, what: str, fmt: str) -> GateCheck:
    ok = bool(value <= threshold)
    return GateCheck(name, ok, value, threshold, f"{what} {'≤' if ok else '>'} {fmt.format(threshold)}")


def _share(difference: float, of: float) -> float:
    """``difference`` as a share of ``of`` (a scaled metric's value); any difference from a perfect 0 is infinite."""
    if of == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / abs(of)


def _percent(share: float) -> str:
    return f"{share * 100:.4g}%"


def _parity(rules: ValidationSection, e: GateEvidence) -> GateCheck:
    diff = e.parity_diff
    if diff is None:  # recorded as such, not as a pass: nothing was compared
        return GateCheck(
            "onnx_parity",
            True,
            math.nan,
            rules.max_parity_diff,
            "not applicable: registered from ONNX (no native model to compare with)",
            applicable=False,
        )
    if e.task != "regression":
        return _at_most(
            "onnx_parity", diff, rules.max_parity_diff, f"max |ONNX − native| probability {diff:.2e}", "{:.0e}"
        )
    # onnx_model.parity measures a regression's gap relative to the values' root mean square: a price near
    # 300,000 is off by ~0.02 in float32 from rounding alone, which no absolute bound should fail.
    return _at_most(
        "onnx_parity",
        diff,
        rules.max_parity_diff,
        f"max |ONNX − native| value {diff:.2e} of the values' root mean square",
        "{:.0e}",
    )


def _regression(rules: ValidationSection, e: GateEvidence, compared: SameRows | None) -> GateCheck:
    if e.production_value is None:
        return GateCheck("no_regression", True, 0.0, rules.max_regression, "no production version to compare with")
    name, value, production = metric_label(e.metric), e.value, e.production_value
    if not math.isfinite(production):
        return _regression_unscored(rules, e)
    worse, ok, moved = _judged_against(rules, e, production)
    rows = f" ({compared.rows})" if compared is not None else ""
    against = (
        f"{name} {format_value(e.metric, value)} vs production v{e.production_version} "
        f"{format_value(e.metric, production)} on the same rows{rows}: "
    )
    interval = (
        ""
        if compared is None
        else f"; {compared.difference.interval_text()} of the difference, {compared.difference.verdict}"
    )
    return GateCheck("no_regression", ok, worse, rules.max_regression, f"{against}{moved}{interval}")


def _regression_unscored(rules: ValidationSection, e: GateEvidence) -> GateCheck:
    """Production could not score this run's rows (its features differ, its model failed, its value is undefined
    on them): the check says so and judges against production's recorded value on its own evaluation rows, a
    rougher comparison (other rows) but one the numbers name. With none recorded it fails, not compared: a
    production model that cannot be read cannot vouch for the new one."""
    name, recorded = metric_label(e.metric), e.production_recorded
    why = e.production_unscored or f"its {name} is undefined on them"
    unscored = f"production v{e.production_version} could not score this run's evaluation rows ({why})"
    if recorded is None or isinstance(recorded, msgspec.UnsetType) or not math.isfinite(recorded):
        return GateCheck(
            "no_regression",
            False,
            math.nan,
            rules.max_regression,
            f"not compared: {unscored} and records no {name} of its own to judge against",
        )
    worse, ok, moved = _judged_against(rules, e, recorded)
    return GateCheck(
        "no_regression",
        ok,
        worse,
        rules.max_regression,
        f"{unscored}; against its recorded {name} {format_value(e.metric, recorded)} on its own evaluation rows "
        f"instead: {name} {format_value(e.metric, e.value)}, {moved}",
    )


def _judged_against(rules: ValidationSection, e: GateEvidence, production: float) -> tuple[float, bool, str]:
    """How much worse this run's value is than ``production``'s (a share for a scaled metric), whether that is
    within ``max_regression``, and the words for it."""
    higher, scaled = higher_is_better(e.metric), e.metric in SCALED
    worse = production - e.value if higher else e.value - production
    if scaled:
        worse = _share(worse, production)
    ok = bool(worse <= rules.max_regression) if not math.isnan(worse) else False
    allowed = _percent(rules.max_regression) if scaled else f"{rules.max_regression}"
    size = _percent(abs(worse)) if scaled else f"{abs(worse):.4f}"
    if math.isnan(worse):  # this run's value is undefined on the rows: it fails, and no size is given
        moved = f"not comparable, this run's {metric_label(e.metric)} is undefined on them"
    elif not worse > 0:  # no worse: the allowance is beside the point
        moved = f"{'up' if higher and not scaled else 'better by'} {size} (worse by at most {allowed} allowed)"
    else:
        moved = f"{'down' if higher and not scaled else 'worse by'} {size} {'≤' if ok else '>'} {allowed} allowed"
    return worse, ok, moved


def _segment_gap(rules: ValidationSection, e: GateEvidence, column: str, scores: dict[str, SegmentScore]) -> GateCheck:
    binary, least = e.task == "binary", rules.segment_min_positives
    # A binary segment needs positives and negatives for AUC to mean anything; other tasks count rows.
    judged = {
        k: s.value
        for k, s in scores.items()
        if not math.isnan(s.value) and (s.positives >= least and s.rows > s.positives if binary else s.rows >= least)
    }
    unit = "positives" if binary else "rows"
    small = sorted(k for k in scores if k not in judged)
    note = f"; too few {unit} to judge: {', '.join(small)}" if small else ""
    if len(judged) < 2:
        return GateCheck(
            f"segment_gap_{column}",
            True,
            0.0,
            rules.max_segment_gap,
            f"fewer than two {column} segments with ≥ {least} {unit}{note}",
        )
    higher = higher_is_better(e.metric)
    worst, best = (min, max) if higher else (max, min)
    low, high = worst(judged, key=judged.get), best(judged, key=judged.get)
    gap = judged[high] - judged[low] if higher else judged[low] - judged[high]
    name, fmt = metric_label(e.metric), (lambda v: format_value(e.metric, v))
    spread = f"{name} by {column}: {low} {fmt(judged[low])} … {high} {fmt(judged[high])}"
    if e.metric in SCALED:
        share = _share(gap, e.value)
        ok = bool(share <= rules.max_segment_gap)  # NaN fails
        return GateCheck(
            f"segment_gap_{column}",
            ok,
            share,
            rules.max_segment_gap,
            f"{spread}, gap {fmt(gap)} = {_percent(share)} of the overall {fmt(e.value)} "
            f"{'≤' if ok else '>'} {_percent(rules.max_segment_gap)}{note}",
        )
    ok = bool(gap <= rules.max_segment_gap)
    return GateCheck(
        f"segment_gap_{column}",
        ok,
        gap,
        rules.max_segment_gap,
        f"{spread}, gap {gap:.4f} {'≤' if ok else '>'} {rules.max_segment_gap}{note}",
    )

"""The gates a new version is checked against; thresholds come from the model's spec.

The pipeline gathers the evidence (``GateEvidence``); the rules here only judge it, so each
rule is plain arithmetic that can be tested on its own.
"""

from __future__ import annotations

import math

import msgspec

from appliance.spec import ValidationSection
from appliance.validation.probes import SegmentScore


class GateCheck(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str
    applicable: bool = True     # False: the gate does not apply to this version (it neither passes nor blocks)


class GateReport(msgspec.Struct, frozen=True):
    passed: bool
    checks: list[GateCheck]

    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


class GateEvidence(msgspec.Struct, frozen=True):
    auc: float
    recall_at_precision: float
    parity_diff: float | None                          # None: no native model to compare (an outside ONNX file)
    p99_ms: float
    robustness_probes: int
    robustness_failures: list[str]
    segments: dict[str, dict[str, SegmentScore]] = {}   # segment column -> value -> score
    production_version: int | None = None
    production_auc: float | None = None                # the production version on the same evaluation rows


def evaluate_gates(rules: ValidationSection, e: GateEvidence) -> GateReport:
    """Every gate, passed or not: thresholds, regression, segment gap, parity, latency, robustness."""
    checks = [
        _at_least("min_auc", e.auc, rules.min_auc, f"evaluation AUC {e.auc:.4f}"),
        _at_least("min_recall", e.recall_at_precision, rules.min_recall,
                  f"recall {e.recall_at_precision:.3f} at precision ≥ {rules.recall_at_precision}"),
        _regression(rules, e),
        *(_segment_gap(rules, column, scores) for column, scores in e.segments.items()),
        _parity(rules, e.parity_diff),
        _at_most("latency_p99", e.p99_ms, rules.max_p99_ms, f"p99 single-row ONNX inference {e.p99_ms:.3f} ms",
                 "{} ms"),
        GateCheck("robustness", not e.robustness_failures, float(len(e.robustness_failures)), 0.0,
                  f"{e.robustness_probes} probes (missing and out-of-range features): "
                  + ("every answer a probability" if not e.robustness_failures
                     else f"{len(e.robustness_failures)} bad — " + "; ".join(e.robustness_failures[:5]))),
    ]
    return GateReport(all(c.passed for c in checks), checks)


def _at_least(name: str, value: float, threshold: float, what: str) -> GateCheck:
    ok = bool(value >= threshold)  # NaN fails
    return GateCheck(name, ok, value, threshold, f"{what} {'≥' if ok else '<'} {threshold}")


def _at_most(name: str, value: float, threshold: float, what: str, fmt: str) -> GateCheck:
    ok = bool(value <= threshold)
    return GateCheck(name, ok, value, threshold, f"{what} {'≤' if ok else '>'} {fmt.format(threshold)}")


def _parity(rules: ValidationSection, diff: float | None) -> GateCheck:
    if diff is None:  # recorded as such, not as a pass: nothing was compared
        return GateCheck("onnx_parity", True, math.nan, rules.max_parity_diff,
                         "not applicable: registered from ONNX (no native model to compare with)", applicable=False)
    return _at_most("onnx_parity", diff, rules.max_parity_diff, f"max |ONNX − native| probability {diff:.2e}",
                    "{:.0e}")


def _regression(rules: ValidationSection, e: GateEvidence) -> GateCheck:
    if e.production_auc is None:
        return GateCheck("no_regression", True, 0.0, rules.max_regression,
                         "no production version to compare with")
    drop = e.production_auc - e.auc
    ok = bool(drop <= rules.max_regression) if not math.isnan(drop) else False
    return GateCheck("no_regression", ok, drop, rules.max_regression,
                     f"AUC {e.auc:.4f} vs production v{e.production_version} {e.production_auc:.4f} on the same "
                     f"rows: {'down' if drop > 0 else 'up'} {abs(drop):.4f} {'≤' if ok else '>'} "
                     f"{rules.max_regression} allowed")


def _segment_gap(rules: ValidationSection, column: str, scores: dict[str, SegmentScore]) -> GateCheck:
    judged = {k: s.auc for k, s in scores.items() if s.positives >= rules.segment_min_positives
              and s.rows > s.positives and not math.isnan(s.auc)}
    small = sorted(k for k in scores if k not in judged)
    note = f"; too few positives to judge: {', '.join(small)}" if small else ""
    if len(judged) < 2:
        return GateCheck(f"segment_gap_{column}", True, 0.0, rules.max_segment_gap,
                         f"fewer than two {column} segments with ≥ {rules.segment_min_positives} positives{note}")
    low, high = min(judged, key=judged.get), max(judged, key=judged.get)
    gap = judged[high] - judged[low]
    ok = bool(gap <= rules.max_segment_gap)
    return GateCheck(f"segment_gap_{column}", ok, gap, rules.max_segment_gap,
                     f"AUC by {column}: {low} {judged[low]:.4f} … {high} {judged[high]:.4f}, gap {gap:.4f} "
                     f"{'≤' if ok else '>'} {rules.max_segment_gap}{note}")

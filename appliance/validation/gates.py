"""The gates a new version is checked against; thresholds come from the model's spec."""

from __future__ import annotations

import math

import msgspec

from appliance.spec import ValidationSection


class GateCheck(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str


class GateReport(msgspec.Struct, frozen=True):
    passed: bool
    checks: list[GateCheck]

    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


def evaluate_gates(rules: ValidationSection, metrics: dict[str, float], parity_diff: float) -> GateReport:
    """Absolute quality threshold and ONNX parity; every check is reported, passed or not."""
    auc = metrics.get("auc", math.nan)
    checks = [
        GateCheck("min_auc", bool(auc >= rules.min_auc), auc, rules.min_auc,
                  f"evaluation AUC {auc:.4f} {'≥' if auc >= rules.min_auc else '<'} {rules.min_auc}"),
        GateCheck("onnx_parity", bool(parity_diff <= rules.max_parity_diff), parity_diff,
                  rules.max_parity_diff,
                  f"max |ONNX − native| probability {parity_diff:.2e} "
                  f"{'≤' if parity_diff <= rules.max_parity_diff else '>'} {rules.max_parity_diff:.0e}"),
    ]
    return GateReport(all(c.passed for c in checks), checks)

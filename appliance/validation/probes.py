"""The evidence gates judge: recall at a precision, per-segment AUC, single-row latency, robustness probes."""

from __future__ import annotations

import time

import msgspec
import numpy as np

from appliance.features.encoding import FeatureSchema
from appliance.training import onnx_export
from appliance.training.metrics import roc_auc

# Values no valid request holds: huge, negative, infinite, and category codes past any vocabulary.
OUT_OF_RANGE = (3e38, -3e38, np.inf, -np.inf, -1.0, 1e6)


class SegmentScore(msgspec.Struct, frozen=True):
    rows: int
    positives: int
    auc: float


def recall_at_precision(y: np.ndarray, p: np.ndarray, precision: float) -> float:
    """The highest recall at any threshold whose precision is at least ``precision`` (0 if none is)."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return 0.0
    order = np.argsort(-np.asarray(p), kind="mergesort")
    scores, hits = np.asarray(p)[order], y[order]
    # Only thresholds between distinct scores are real: rows with equal scores go together.
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(hits)[last_of_tie]
    flagged = np.flatnonzero(last_of_tie) + 1
    ok = tp / flagged >= precision
    return float(tp[ok].max() / y.sum()) if ok.any() else 0.0


def segment_scores(y: np.ndarray, p: np.ndarray, segment: np.ndarray) -> dict[str, SegmentScore]:
    """AUC of each segment value (a missing value is its own segment, '(missing)')."""
    labels = np.asarray(["(missing)" if v is None else str(v) for v in segment], dtype=object)
    y = np.asarray(y).astype(bool)
    out = {}
    for value in sorted(set(labels)):
        mask = labels == value
        out[value] = SegmentScore(int(mask.sum()), int(y[mask].sum()), roc_auc(y[mask], np.asarray(p)[mask]))
    return out


def single_row_p99_ms(onnx_bytes: bytes, x: np.ndarray, calls: int = 500) -> float:
    """p99 latency of one-row ONNX Runtime calls on the CPU, made the way the serving path makes them."""
    sess = onnx_export.session(onnx_bytes, ["CPUExecutionProvider"])
    rows = x[np.arange(calls) % len(x)]
    for i in range(min(50, calls)):  # warm-up: first calls allocate
        onnx_export.predict_proba(sess, rows[i:i + 1])
    times = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        onnx_export.predict_proba(sess, rows[i:i + 1])
        times[i] = time.perf_counter() - started
    return float(np.percentile(times, 99) * 1e3)


def robustness_probes(schema: FeatureSchema, typical: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Rows with every feature missing, each feature missing alone, and each feature out of range.

    ``typical`` is one ordinary encoded row the single-feature probes start from.
    """
    names, rows = ["all features missing"], [np.full(len(schema.columns), np.nan, dtype=np.float32)]
    for j, column in enumerate(schema.columns):
        row = typical.astype(np.float32).copy()
        row[j] = np.nan
        names.append(f"{column.name} missing")
        rows.append(row)
        for value in OUT_OF_RANGE:
            row = typical.astype(np.float32).copy()
            row[j] = value
            names.append(f"{column.name} = {value:g}")
            rows.append(row)
    return names, np.vstack(rows)


def robustness_failures(onnx_bytes: bytes, schema: FeatureSchema, typical: np.ndarray) -> tuple[int, list[str]]:
    """(probes run, the ones whose answer was an error, NaN, or not a probability)."""
    names, rows = robustness_probes(schema, typical)
    sess = onnx_export.session(onnx_bytes, ["CPUExecutionProvider"])
    failures = []
    for name, row in zip(names, rows):
        try:
            p = onnx_export.predict_proba(sess, row[None, :])
        except Exception as e:  # a crash is exactly what this gate looks for
            failures.append(f"{name}: {type(e).__name__}")
            continue
        if not (np.isfinite(p).all() and (0 <= p).all() and (p <= 1).all()):
            failures.append(f"{name}: answered {float(p[0])!r}")
    return len(names), failures

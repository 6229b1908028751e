"""The evidence gates judge: recall at a precision, the metric per segment, single-row latency, robustness probes."""

from __future__ import annotations

import time

import msgspec
import numpy as np

from appliance.features.encoding import FeatureSchema
from appliance.scoring import onnx_model
from appliance.scoring.metrics import score
from appliance.task import BINARY, Task

# Values no valid request holds: huge, negative, infinite, and category codes past any vocabulary.
OUT_OF_RANGE = (3e38, -3e38, np.inf, -np.inf, -1.0, 1e6)
# Answers of a multiclass model must sum to one within this (float32 softmax, tree sums).
PROBABILITY_SUM_TOLERANCE = 1e-4


class SegmentScore(msgspec.Struct, frozen=True):
    rows: int
    positives: int  # binary: rows labelled 1; other tasks: 0 (rows decide whether a segment is judged)
    value: float  # the metric the gates judge, on the segment's rows


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


def segment_scores(
    y: np.ndarray, output: np.ndarray, segment, task: Task = BINARY, metric: str | None = None
) -> dict[str, SegmentScore]:
    """The metric (default: the task's) of each segment value; a missing value is its own segment, '(missing)'."""
    labels = np.asarray(["(missing)" if v is None else str(v) for v in segment], dtype=object)
    y, output = np.asarray(y), np.asarray(output)
    metric = metric or task.metric
    out = {}
    for value in sorted(set(labels)):
        mask = labels == value
        positives = int(y[mask].astype(bool).sum()) if task.kind == "binary" else 0
        out[value] = SegmentScore(int(mask.sum()), positives, score(task, metric, y[mask], output[mask]))
    return out


class Latency(msgspec.Struct, frozen=True):
    p99_ms: float
    provider: str  # the ONNX Runtime provider the calls ran on


def single_row_latency(
    onnx_bytes: bytes,
    x: np.ndarray,
    calls: int = 500,
    task: Task | None = None,
    provider: onnx_model.ProviderSetting = "cpu",
) -> Latency:
    """p99 latency of one-row ONNX Runtime calls made the way the serving path makes them, on the provider
    ``provider`` gives the model (``onnx_model.serving_session``, CPU when CUDA is not there): the task's
    output (``onnx_model.predict``), or without a task the answer output the model has."""
    sess, _ = onnx_model.serving_session(onnx_bytes, provider)
    served = sess.get_providers()[0]
    if task is not None:
        bound = served == onnx_model.CUDA

        def call(row):
            return onnx_model.predict(sess, row, task, bound)
    else:
        names = [o.name for o in sess.get_outputs()]
        answer = [n for n in (onnx_model.PROBABILITIES, onnx_model.VALUE) if n in names][:1] or None

        def call(row):
            return sess.run(answer, {onnx_model.INPUT_NAME: row})

    rows = x[np.arange(calls) % len(x)]
    for i in range(min(50, calls)):  # warm-up: first calls allocate
        call(rows[i : i + 1])
    times = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        call(rows[i : i + 1])
        times[i] = time.perf_counter() - started
    return Latency(float(np.percentile(times, 99) * 1e3), served)


def single_row_p99_ms(onnx_bytes: bytes, x: np.ndarray, calls: int = 500, task: Task | None = None) -> float:
    """``single_row_latency``'s p99 on the CPU, in milliseconds: a variant's cost against another's."""
    return single_row_latency(onnx_bytes, x, calls, task).p99_ms


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


def robustness_failures(
    onnx_bytes: bytes, schema: FeatureSchema, typical: np.ndarray, task: Task = BINARY
) -> tuple[int, list[str]]:
    """(probes run, the ones whose answer was an error or not a valid answer of the task: a probability in
    [0, 1] (binary); one finite probability in [0, 1] per class, summing to 1 ± 1e-4 (multiclass); a finite
    number (regression))."""
    names, rows = robustness_probes(schema, typical)
    sess = onnx_model.session(onnx_bytes, ["CPUExecutionProvider"])
    failures = []
    for name, row in zip(names, rows):
        try:
            answer = onnx_model.predict(sess, row[None, :], task)
        except Exception as e:  # a crash is exactly what this gate looks for
            failures.append(f"{name}: {type(e).__name__}")
            continue
        problem = _invalid_answer(np.asarray(answer, dtype=np.float64), task)
        if problem:
            failures.append(f"{name}: {problem}")
    return len(names), failures


def _invalid_answer(answer: np.ndarray, task: Task) -> str | None:
    """What is wrong with one row's output, or None when it is a valid answer of the task."""
    if task.kind == "multiclass":
        k = len(task.classes)
        if answer.shape != (1, k):
            return f"answered shape {answer.shape}, not (1, {k})"
        p = answer[0]
        shown = "[" + ", ".join(f"{v:.4g}" for v in p) + "]"
        if not (np.isfinite(p).all() and (0 <= p).all() and (p <= 1).all()):
            return f"answered {shown}"
        if abs(p.sum() - 1) > PROBABILITY_SUM_TOLERANCE:
            return f"answered {shown}, summing to {p.sum():.6g}"
        return None
    if answer.shape != (1,):
        return f"answered shape {answer.shape}, not (1,)"
    v = float(answer[0])
    if task.kind == "regression":
        return None if np.isfinite(v) else f"answered {v!r}"
    return None if np.isfinite(v) and 0 <= v <= 1 else f"answered {v!r}"

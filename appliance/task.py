"""What a model predicts: a binary label, one of several classes, or a number.

Every part of the loop that reads a model's output asks its ``Task``: what the trained model and its
ONNX export return per row, how the target's values become training labels, which metric judges a
version, and how an answer reads. The output of ``n`` rows is, by task:

- ``binary``: a float array [n], the probability of class 1 (the ONNX output ``probabilities`` [n, 2]): the
  positive class, 1 of a 0/1 (or true/false) target, or the text value ``[target] positive`` names;
- ``multiclass``: a float array [n, k], the probability of each class in ``classes`` order (``probabilities``);
- ``regression``: a float array [n], the predicted value (the ONNX output ``value`` [n, 1]).

Class labels are compared as canonical text, as entity keys are (``data.values.key_text``): a class
declared as the integer ``2`` is the value ``2``, ``"2"`` and ``2.0``; a text class must match exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

TaskKind = Literal["binary", "multiclass", "regression"]
ClassLabel = str | int

# Each task's metric for search, gates and the alert rules unless the spec names another.
DEFAULT_METRIC: dict[str, str] = {"binary": "auc", "multiclass": "macro_f1", "regression": "rmse"}
# The metrics a spec may name per task (all are computed; these are the ones a single number can judge).
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "f1", "precision", "recall", "log_loss"),
    "multiclass": ("macro_f1", "weighted_f1", "accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})
# Metrics in the target's own units: a gap or a regression allowance is a share of the value, not a difference.
SCALED = frozenset({"rmse", "mae"})


@dataclass(frozen=True)
class Task:
    kind: TaskKind = "binary"
    classes: tuple[ClassLabel, ...] = (0, 1)  # classifiers' labels in output order; () for regression
    threshold: float = 0.5  # binary: probability at or above which the label is 1

    @property
    def classifier(self) -> bool:
        return self.kind != "regression"

    @property
    def flags(self) -> bool:
        """A binary model of a 0/1 or true/false target, not of two text values (negative, positive)."""
        return self.kind == "binary" and self.classes == (0, 1)

    @property
    def metric(self) -> str:
        return DEFAULT_METRIC[self.kind]

    def class_text(self) -> list[str]:
        """The classes as canonical text, in output order."""
        return [label_text(c) for c in self.classes]

    def codes(self, values) -> np.ndarray:
        """Class index (0..k-1) of each label; -1 for a missing one or one outside the classes."""
        index = {t: i for i, t in enumerate(self.class_text())}
        return np.array([index.get(label_text(v), -1) for v in values], dtype=np.int64)

    def labels(self, values) -> np.ndarray:
        """The training labels of target values (a list, an array or a column): class indices for classifiers
        (a text binary target's positive value is 1), float64 for regression. The one conversion of the
        user's labels: training, evaluation, gates and monitoring's reference all read them through it."""
        if self.kind == "regression":
            return np.asarray(values, dtype=np.float64)
        if self.flags:  # 0/1 or true/false already are the indices: no lookup per row
            return np.asarray(values).astype(np.int8)
        return self.codes(values)

    def predicted_codes(self, output: np.ndarray) -> np.ndarray:
        """The class each row's output picks (classifiers only)."""
        if self.kind == "binary":
            return (np.asarray(output) >= self.threshold).astype(np.int64)
        return np.argmax(np.asarray(output), axis=1).astype(np.int64)

    def answer(self, output_row) -> dict:
        """One row's answer in the API: by task, probability and label; class and probabilities; value."""
        if self.kind == "binary":
            p = float(output_row)
            return {"probability": p, "label": self.classes[int(p >= self.threshold)]}
        if self.kind == "multiclass":
            row = [float(v) for v in output_row]
            best = max(range(len(row)), key=row.__getitem__)
            return {"class": self.classes[best], "probabilities": {label_text(c): p for c, p in zip(self.classes, row)}}
        return {"value": float(output_row)}


BINARY = Task()  # what a spec without a [target] task predicts, and so every caller that names none


def label_text(value: object) -> str:
    """A class label's canonical text: integers and integral floats as digits, text stripped of nothing."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    return "" if value is None else str(value)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


# How people read each metric's name.
METRIC_LABELS = {
    "auc": "AUC",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "log_loss": "log loss",
    "macro_f1": "macro F1",
    "weighted_f1": "weighted F1",
    "accuracy": "accuracy",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
}
# The metrics a one-line summary of a version shows, by task.
HEADLINE: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "precision", "recall", "f1", "log_loss"),
    "multiclass": ("accuracy", "macro_f1", "weighted_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}

# The two metrics a table of versions shows, by task.
SUMMARY: dict[str, tuple[str, str]] = {
    "binary": ("auc", "f1"),
    "multiclass": ("accuracy", "macro_f1"),
    "regression": ("rmse", "r2"),
}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def metrics_line(kind: str, metrics: dict) -> str:
    """A version's headline metrics in its task's terms, e.g. 'accuracy 0.912, macro F1 0.874, …'."""
    shown = [(m, metrics[m]) for m in HEADLINE[kind] if m in metrics]
    return ", ".join(f"{metric_label(m)} {v:.4f}" for m, v in shown)


def headline(metrics: dict) -> tuple[str, float | None]:
    """The metric a version is known by, read from its metrics (a regression's RMSE, a multiclass model's
    macro F1, a binary model's AUC) when its spec is not at hand."""
    for metric in ("rmse", "macro_f1", "auc"):
        if metric in metrics:
            return metric, metrics[metric]
    return "auc", None


def confusion_lines(metrics: dict) -> list[str]:
    """A multiclass version's confusion matrix from its flat 'confusion.<true>.<predicted>' counts: a row per
    true class, a column per predicted class."""
    cells = {}
    for key, value in metrics.items():
        if key.startswith("confusion."):
            true, _, predicted = key[len("confusion.") :].partition(".")
            cells[(true, predicted)] = value
    if not cells:
        return []
    labels = list(dict.fromkeys([t for t, _ in cells] + [p for _, p in cells]))
    width = max(8, *(len(c) + 1 for c in labels))
    lines = ["true \\ predicted".ljust(width + 2) + "".join(c.rjust(width) for c in labels)]
    for t in labels:
        lines.append(f"  {t:<{width}}" + "".join(f"{cells.get((t, p), 0):>{width}.0f}" for p in labels))
    return lines

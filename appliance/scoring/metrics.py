"""Evaluation metrics for every task, computed with numpy (no scikit-learn at run time).

``evaluate(task, y, output)`` gives every metric of a task as ``dict[str, float]`` (the registry and tracking
store them as floats); ``score(task, metric, y, output)`` computes one named metric, cheaply, for search trials
and per-epoch validation curves. ``y`` is what ``Task.labels`` returns: 0/1 (binary), class indices (multiclass),
float values (regression); ``output`` is the task's model output (see ``appliance.task``).

Conventions, each the same as scikit-learn's unless it says otherwise:

- A multiclass row's predicted class is the first class with the highest probability (``numpy.argmax``).
- Per-class precision (recall) of a class never predicted (never true) is 0.0, as scikit-learn's
  ``zero_division`` default gives. Macro F1 averages over the classes that are true or predicted in the rows
  (scikit-learn's default labels): a class absent from both says nothing about the model.
- Multiclass log loss clips probabilities to [eps, 1 − eps], eps the machine precision of the output's float type.
- Multiclass AUC is the macro mean of one-vs-rest AUCs over the classes with rows both in and out of them
  (NaN when no class is); scikit-learn refuses rows that lack a class instead.
- R² of a constant target is NaN: nothing varies to explain (scikit-learn reports 0.0 or 1.0).
- Empty rows give NaN metrics and zero counts, not an error: a window without feedback is not a broken model.
- A NaN or infinite output: ``evaluate`` refuses it (InvalidInput with the count of such rows); ``score``
  returns NaN, so a diverged search trial or epoch ranks last instead of stopping the run.
- ``baseline_score``: the metric of a model that knows nothing, which the ``beats_baseline`` gate compares with.
"""

from __future__ import annotations

import numpy as np

from appliance.errors import InvalidInput
from appliance.task import SCALED, Task, label_text

EPS = 1e-15
QUARTILES = 4


# How messages name a metric.
def format_value(metric: str, value: float) -> str:
    """A metric's value for a message: four decimals, or six significant digits in the target's units."""
    return f"{value:.6g}" if metric in SCALED else f"{value:.4f}"


# -- binary ----------------------------------------------------------------------------------------


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties). A NaN or infinite score has no
    rank (sorting would put NaN above every score): refused with InvalidInput."""
    score = np.asarray(score, dtype=np.float64)
    if not np.isfinite(score).all():
        raise InvalidInput(
            f"{int(np.sum(~np.isfinite(score))):,} of {score.size:,} scores are NaN or infinite; "
            "an AUC ranks finite scores only"
        )
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = np.asarray(score)[order]
    ranks = np.empty(y.size, dtype=np.float64)
    # Average ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [y.size]))
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under the predicted probabilities."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, precision, recall, F1 (at the threshold), log loss, and the positive rates."""
    y = np.asarray(y).astype(bool)
    predicted = np.asarray(p) >= threshold
    precision, recall, f1 = _threshold_scores(y, predicted)
    return {
        "auc": roc_auc(y, p),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "log_loss": log_loss(y, p),
        "rows": float(y.size),
        "positive_rate": float(y.mean()) if y.size else 0.0,
        "predicted_positive_rate": float(predicted.mean()) if y.size else 0.0,
    }


def _threshold_scores(y: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    tp = int(np.sum(predicted & y))
    fp = int(np.sum(predicted & ~y))
    fn = int(np.sum(~predicted & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# -- multiclass ------------------------------------------------------------------------------------


def confusion(y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Counts [k, k]: row the true class, column the predicted one."""
    return np.bincount(np.asarray(y) * k + np.asarray(predicted), minlength=k * k).reshape(k, k)


def _f1_scores(matrix: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Per-class F1, macro F1 over the classes true or predicted, and F1 weighted by true rows."""
    tp, true, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    denominator = true + predicted
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
    seen = denominator > 0
    macro = float(f1[seen].mean()) if seen.any() else float("nan")
    weighted = float(np.sum(f1 * true) / true.sum()) if true.sum() else float("nan")
    return f1, macro, weighted


def multiclass_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood of each row's true class, probabilities clipped as scikit-learn clips them."""
    p = np.asarray(p)
    eps = np.finfo(p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64).eps
    chosen = np.clip(p[np.arange(len(y)), y].astype(np.float64), eps, 1 - eps)
    return float(-np.mean(np.log(chosen))) if len(y) else float("nan")


def multiclass_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Macro mean of one-vs-rest AUCs over the classes with rows both in and out of them (NaN if none)."""
    aucs = [roc_auc(np.asarray(y) == c, p[:, c]) for c in range(p.shape[1])]
    defined = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(defined)) if defined else float("nan")


def multiclass_metrics(y: np.ndarray, p: np.ndarray, classes) -> dict[str, float]:
    """Accuracy, macro and weighted F1, log loss, macro one-vs-rest AUC, and per class (by its label text):
    precision, recall, true and predicted share, and the confusion counts 'confusion.<true>.<predicted>'."""
    y, p = np.asarray(y, dtype=np.int64), np.asarray(p)
    names = [label_text(c) for c in classes]
    k, n = len(names), len(y)
    predicted = np.argmax(p, axis=1) if n else np.zeros(0, dtype=np.int64)
    matrix = confusion(y, predicted, k)
    tp, true, chosen = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    _, macro, weighted = _f1_scores(matrix)
    out = {
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": macro,
        "weighted_f1": weighted,
        "log_loss": multiclass_log_loss(y, p),
        "auc": multiclass_auc(y, p) if n else float("nan"),
        "rows": float(n),
    }
    for i, name in enumerate(names):
        out[f"precision.{name}"] = float(tp[i] / chosen[i]) if chosen[i] else 0.0
        out[f"recall.{name}"] = float(tp[i] / true[i]) if true[i] else 0.0
        out[f"share.{name}"] = float(true[i] / n) if n else 0.0
        out[f"predicted_share.{name}"] = float(chosen[i] / n) if n else 0.0
    for i, truth in enumerate(names):
        for j, guess in enumerate(names):
            out[f"confusion.{truth}.{guess}"] = float(matrix[i, j])
    return out


# -- regression ------------------------------------------------------------------------------------


def quartile_bins(y: np.ndarray) -> np.ndarray:
    """Each row's quartile of the true target, 0..3. The edges are ``numpy.quantile`` at 25/50/75 % (linear
    interpolation); a value equal to an edge belongs to the lower quartile, so a quartile is (edge below, edge
    above] and tied values always share one. A target with many ties can leave a quartile empty."""
    edges = np.quantile(y, [0.25, 0.5, 0.75])
    return np.searchsorted(edges, y, side="left")


def r2(y: np.ndarray, yhat: np.ndarray) -> float:
    """1 − residual / total sum of squares; NaN for a constant (or empty) target."""
    total = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    if total == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((y - yhat) ** 2)) / total


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R², the mean target and prediction, and by quartile of the true target (``quartile_bins``)
    the MAE 'mae.q1'..'mae.q4' and the bias 'bias.q1'..'bias.q4' (mean prediction − target: positive means
    the model predicts too high there); a quartile without rows is NaN."""
    y, yhat = np.asarray(y, dtype=np.float64), np.asarray(yhat, dtype=np.float64).reshape(-1)
    n = len(y)
    nan = float("nan")
    error = yhat - y
    out = {
        "rmse": float(np.sqrt(np.mean(error**2))) if n else nan,
        "mae": float(np.mean(np.abs(error))) if n else nan,
        "r2": r2(y, yhat),
        "rows": float(n),
        "mean_target": float(y.mean()) if n else nan,
        "mean_prediction": float(yhat.mean()) if n else nan,
    }
    bins = quartile_bins(y) if n else np.zeros(0, dtype=np.int64)
    for q in range(QUARTILES):
        part = error[bins == q]
        out[f"mae.q{q + 1}"] = float(np.mean(np.abs(part))) if len(part) else nan
        out[f"bias.q{q + 1}"] = float(np.mean(part)) if len(part) else nan
    return out


# -- every task ------------------------------------------------------------------------------------


def evaluate(task: Task, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Every metric of the task. A NaN or infinite output is refused with InvalidInput naming how many rows
    had one (a model that answers that is broken), as are a wrong shape, a label outside the classes and a
    missing regression target."""
    y, output = _checked(task, y, output)
    broken = int(np.sum(~np.isfinite(output.reshape(len(y), -1)).all(axis=1))) if len(y) else 0
    if broken:
        raise InvalidInput(
            f"the model's output is NaN or infinite for {broken:,} of {len(y):,} rows; "
            "a model that answers that is broken — retrain it or fix its inputs"
        )
    if task.kind == "binary":
        return binary_metrics(y, output, task.threshold)
    if task.kind == "multiclass":
        return multiclass_metrics(y, output, task.classes)
    return regression_metrics(y, output)


def score(task: Task, metric: str, y: np.ndarray, output: np.ndarray) -> float:
    """One metric of the task (any name ``evaluate`` returns), computed alone. Unlike ``evaluate``, a NaN or
    infinite output scores NaN instead of raising, so a search trial or an epoch that diverged ranks last
    instead of stopping the run."""
    y, output = _checked(task, y, output)
    if output.size and not np.isfinite(output).all():
        return float("nan")
    n, nan = len(y), float("nan")
    if task.kind == "binary":
        y = y.astype(bool)
        if metric == "auc":
            return roc_auc(y, output)
        if metric == "log_loss":
            return log_loss(y, output)
        if metric in ("precision", "recall", "f1"):
            precision, recall, f1 = _threshold_scores(y, output >= task.threshold)
            return {"precision": precision, "recall": recall, "f1": f1}[metric]
    elif task.kind == "multiclass":
        if metric in ("accuracy", "macro_f1", "weighted_f1"):
            matrix = confusion(y, np.argmax(output, axis=1), output.shape[1])
            if metric == "accuracy":
                return float(np.trace(matrix) / n) if n else nan
            _, macro, weighted = _f1_scores(matrix)
            return macro if metric == "macro_f1" else weighted
        if metric == "log_loss":
            return multiclass_log_loss(y, output)
        if metric == "auc":
            return multiclass_auc(y, output) if n else nan
    else:
        if metric == "rmse":
            return float(np.sqrt(np.mean((output - y) ** 2))) if n else nan
        if metric == "mae":
            return float(np.mean(np.abs(output - y))) if n else nan
        if metric == "r2":
            return r2(y, output)
    everything = evaluate(task, y, output)
    if metric not in everything:
        raise InvalidInput(
            f"{task.kind} models have no metric '{metric}'; "
            f"choose one of {', '.join(sorted(k for k in everything if '.' not in k))}"
        )
    return everything[metric]


def baseline_output(task: Task, reference: np.ndarray, rows: int) -> np.ndarray:
    """A model that knows nothing: for every row the class shares (classifiers) or the mean (regression) of
    the ``reference`` labels."""
    reference = np.asarray(reference)
    if task.kind == "regression":
        return np.full(rows, float(np.mean(reference.astype(np.float64))) if len(reference) else np.nan)
    if task.kind == "binary":
        return np.full(rows, float(np.mean(reference.astype(bool))) if len(reference) else np.nan)
    shares = np.bincount(reference.astype(np.int64), minlength=len(task.classes)) / max(len(reference), 1)
    return np.tile(shares, (rows, 1))


def baseline_score(task: Task, metric: str, y: np.ndarray, reference: np.ndarray | None = None) -> float:
    """The metric on rows ``y`` of a model that knows nothing (``baseline_output`` of ``reference``, by default
    ``y`` itself). Multiclass: always the majority class, so accuracy is its share; regression: the mean, so
    R² is 0 and RMSE the target's standard deviation. A model must beat it to be worth serving."""
    y = np.asarray(y)
    if not len(y):
        return float("nan")
    return score(task, metric, y, baseline_output(task, y if reference is None else reference, len(y)))


def _checked(task: Task, y: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels and output as the task's metrics take them, or InvalidInput saying what is wrong."""
    y, output = np.asarray(y), np.asarray(output)
    n = len(y)
    if task.kind == "regression" and output.ndim == 2 and output.shape[1] == 1:  # the ONNX ``value`` [N, 1]
        output = output[:, 0]
    expected = (n, len(task.classes)) if task.kind == "multiclass" else (n,)
    if output.shape != expected:
        raise InvalidInput(
            f"a {task.kind} model's output for {n:,} rows must have shape {expected}, not {output.shape}"
        )
    if task.kind == "multiclass":
        outside = int(np.sum((y < 0) | (y >= len(task.classes)))) if n else 0
        if outside:
            raise InvalidInput(
                f"{outside:,} of {n:,} rows have a label outside the classes "
                f"{task.class_text()}; declare every class in [target] classes"
            )
        y = y.astype(np.int64)
    elif task.kind == "regression":
        y, output = y.astype(np.float64), output.astype(np.float64)
        missing = int(np.sum(~np.isfinite(y)))
        if missing:
            raise InvalidInput(f"{missing:,} of {n:,} rows have no finite target value; drop them or fill them")
    return y, output

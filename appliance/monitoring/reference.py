"""The monitoring reference of a model version: its held-out evaluation rows with their
out-of-sample outputs and labels, stored once when the version is registered.

Stored as a Parquet artifact of the version's training run (name ``reference.parquet``), so a
monitor run reads it back instead of rebuilding features and re-scoring every time.

The model's output is stored in the same columns the monitor builds from the prediction log, by task:

- ``_score``: binary P(class 1); multiclass the chosen class's probability; regression the value;
- multiclass also ``_predicted_label`` (the chosen class's index) and ``_proba.0`` … ``_proba.{k-1}``
  (each class's probability, in the task's class order).

The target column keeps the values the data has (a multiclass label as text, say): ``task.labels``
turns them into class indices or numbers. References stored before tasks (binary, ``_score`` only) read
as they always did.
"""

from __future__ import annotations

import io

import numpy as np
import polars as pl

from appliance.errors import NotFound
from appliance.home import Home
from appliance.scoring.metrics import binary_metrics, evaluate
from appliance.spec import ModelSpec
from appliance.task import Task

ARTIFACT = "reference.parquet"
SCORE = "_score"  # the version's ONNX output for each evaluation row (see above)
PREDICTED = "_predicted_label"  # multiclass: the index of the class the model chose
PROBA = "_proba."  # multiclass: prefix of each class's probability column, by class index


def proba_columns(task: Task) -> list[str]:
    """The multiclass probability columns, in class order (none for the other tasks)."""
    return [f"{PROBA}{i}" for i in range(len(task.classes))] if task.kind == "multiclass" else []


def output_columns(task: Task, output) -> list[pl.Series]:
    """A model's output for n rows (binary [n], multiclass [n, k], regression [n]) as the reference's columns."""
    output = np.asarray(output, dtype=np.float64)
    if task.kind != "multiclass":
        return [pl.Series(SCORE, output.reshape(-1), dtype=pl.Float64)]
    chosen = task.predicted_codes(output)
    return [
        pl.Series(SCORE, output[np.arange(output.shape[0]), chosen], dtype=pl.Float64),
        pl.Series(PREDICTED, chosen, dtype=pl.Int64),
        *(pl.Series(name, output[:, i], dtype=pl.Float64) for i, name in enumerate(proba_columns(task))),
    ]


def task_output(frame: pl.DataFrame, task: Task) -> np.ndarray:
    """The model's output held in a frame's columns, back in the task's shape (multiclass [n, k])."""
    if task.kind == "multiclass":
        return frame.select(proba_columns(task)).to_numpy().astype(np.float64)
    return frame[SCORE].cast(pl.Float64).to_numpy()


def reference_bytes(spec: ModelSpec, eval_part: pl.DataFrame, output, task: Task | None = None) -> bytes:
    """The evaluation rows (event time, entity key, model features, target) and the version's output on them
    (``output`` in the task's shape; ``task`` defaults to the spec's), as Parquet."""
    if task is None:
        from appliance.data.declared import model_task

        task = model_task(spec)
    keep = [
        spec.features.event_time,
        spec.features.entity_key,
        *(f.name for f in spec.model_features),
        spec.target.column,
    ]
    frame = eval_part.select([c for c in keep if c in eval_part.columns]).with_columns(output_columns(task, output))
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def whole_windows(frame: pl.DataFrame, event_time: str, window: str) -> pl.DataFrame:
    """The rows before the last monitoring-window boundary they reach: what windows are compared with.
    Held-out rows end where training was cut, usually inside a window, and that part over-weights what its
    hours hold: a retrain cut at 05:51 gave the hours 0-5 twice the weight of the others, so every whole live
    day then drifted on the hour of day. (The stored reference keeps every row: its metrics are the version's.)
    Kept whole where the cut would leave under half the rows: a part-window is then most of what there is."""
    if event_time not in frame.columns or not isinstance(frame.schema[event_time], pl.Datetime) or frame.is_empty():
        return frame
    times = frame[event_time]
    newest = times.max()
    if newest is None:
        return frame
    end = pl.Series([newest], dtype=times.dtype).dt.truncate(window)[0]
    whole = frame.filter(pl.col(event_time) < end)
    return whole if 2 * whole.height >= frame.height else frame


def with_task_labels(reference: pl.DataFrame, label: str, task: Task) -> pl.DataFrame:
    """The reference with its target values turned into the labels the prediction log's feedback holds:
    a class index (null outside the classes: a text binary target's positive value is 1), a regression value
    as a float; a 0/1 or true/false binary target as stored."""
    if task.flags or label not in reference.columns:
        return reference
    if task.kind == "regression":
        return reference.with_columns(pl.col(label).cast(pl.Float64))
    codes = task.codes(reference[label].to_list())
    return reference.with_columns(pl.Series(label, codes, dtype=pl.Int64).replace(-1, None))


def reference_metrics(reference: pl.DataFrame, label: str, task: Task) -> dict[str, float]:
    """A version's held-out metrics recomputed from its stored reference frame's labelled rows and their
    out-of-sample outputs (``label``: the target column, as the data has it): binary AUC, positive rate, …;
    multiclass accuracy, macro F1, each class's share of the rows (``share.<class>``), …; regression RMSE,
    MAE, R², …. Empty without two classes (classifiers) or two values (regression)."""
    labelled = with_task_labels(reference, label, task).drop_nulls([SCORE, label])
    if labelled[label].n_unique() < 2:
        return {}
    if task.kind == "binary":
        return binary_metrics(labelled[label].to_numpy(), labelled[SCORE].to_numpy(), task.threshold)
    return evaluate(task, labelled[label].to_numpy(), task_output(labelled, task))


def load_reference(home: Home, model: str, version: int) -> pl.DataFrame:
    """A version's reference frame; versions registered before references were stored have none."""
    run_id = home.registry.version(model, version).run_id
    rows = home.tracking.query("SELECT sha256 FROM artifacts WHERE run_id = ? AND name = ?", (run_id, ARTIFACT))
    if not rows:
        raise NotFound(
            f"version {version} of '{model}' has no monitoring reference (it was registered "
            f"before references were stored); train a new version with `appliance train {model}`"
        )
    return pl.read_parquet(io.BytesIO(home.artifacts.get(rows[0]["sha256"])))

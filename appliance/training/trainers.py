"""The trainers a spec can name, behind one interface: fit, predict natively, export to ONNX, store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import lightgbm as lgb
import numpy as np

from appliance.errors import InvalidInput
from appliance.features.encoding import FeatureSchema
from appliance.task import BINARY, Task, TaskKind
from appliance.training import onnx_export
from appliance.training.lightgbm_trainer import (
    booster_task_kind,
    native_predict,
    train_lightgbm,
)

LogMetric = Callable[[str, float, int], None]


class TrainedModel(Protocol):
    trainer: str
    task_kind: TaskKind

    def predict(self, x: np.ndarray) -> np.ndarray: ...  # the task's output (see appliance.task), natively
    def to_onnx(self) -> bytes: ...  # the same output under the ONNX naming convention
    def to_bytes(self) -> bytes: ...  # what a resumed run or `reproduce` reloads


class LightGBMModel:
    trainer = "lightgbm"

    def __init__(self, booster: lgb.Booster, task_kind: TaskKind):
        self.booster = booster
        self.task_kind = task_kind

    def predict(self, x: np.ndarray) -> np.ndarray:
        return native_predict(self.booster, x)

    def to_onnx(self) -> bytes:
        return onnx_export.lightgbm_to_onnx(self.booster)

    def to_bytes(self) -> bytes:
        return self.booster.model_to_string().encode()


def fit(
    trainer: str,
    schema: FeatureSchema,
    x: np.ndarray,
    y: np.ndarray,
    params: dict,
    seed: int,
    *,
    task: Task = BINARY,
    log_metric: LogMetric | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 1,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> TrainedModel:
    """Train the named trainer for the task on labels from ``task.labels`` (class indices, or values).

    Checkpoints and a per-epoch validation curve apply to the MLP.
    """
    check_labels(task, y, "training")
    if validation is not None:
        check_labels(task, validation[1], "validation")
    if trainer == "lightgbm":
        return LightGBMModel(train_lightgbm(schema, x, y, params, seed, log_metric, task), task.kind)
    from appliance.training.mlp_trainer import train_mlp  # torch loads only for the MLP

    return train_mlp(
        schema,
        x,
        y,
        params,
        seed,
        task=task,
        log_metric=log_metric,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        validation=validation,
        on_checkpoint=on_checkpoint,
    )


def check_labels(task: Task, y: np.ndarray, rows: str) -> None:
    """Labels a trainer can learn from: class indices 0..k-1, or finite values. The target's values are
    checked against the task before training; this stops a caller that skipped that with one clear line."""
    y = np.asarray(y)
    if task.kind == "regression":
        if y.size and not np.isfinite(y.astype(np.float64)).all():
            raise InvalidInput(
                f"the {rows} target has a missing or infinite value; a regression target needs a number in every row"
            )
        return
    k = len(task.classes)
    outside = (y < 0) | (y >= k)
    if outside.any():
        raise InvalidInput(
            f"{int(outside.sum())} {rows} rows have a target outside the classes "
            f"{task.class_text()}; declare every class in [target] classes"
        )


def load_model(trainer: str, data: bytes) -> TrainedModel:
    """A model stored by ``to_bytes`` (LightGBM text, or MLP tensors loaded without pickle), with its task:
    a booster's objective names it, the MLP keeps it in its config."""
    if trainer == "lightgbm":
        text = data.decode()
        return LightGBMModel(lgb.Booster(model_str=text), booster_task_kind(text))
    from appliance.training.mlp_trainer import load_mlp

    return load_mlp(data)

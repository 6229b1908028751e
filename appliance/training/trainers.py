"""The trainers a spec can name, behind one interface: fit, predict natively, export to ONNX, store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import lightgbm as lgb
import numpy as np

from appliance.features.encoding import FeatureSchema
from appliance.training import onnx_export
from appliance.training.lightgbm_trainer import native_predict, train_lightgbm

LogMetric = Callable[[str, float, int], None]


class TrainedModel(Protocol):
    trainer: str

    def predict(self, x: np.ndarray) -> np.ndarray: ...   # native probabilities, the parity reference
    def to_onnx(self) -> bytes: ...
    def to_bytes(self) -> bytes: ...                      # what a resumed run or `reproduce` reloads


class LightGBMModel:
    trainer = "lightgbm"

    def __init__(self, booster: lgb.Booster):
        self.booster = booster

    def predict(self, x: np.ndarray) -> np.ndarray:
        return native_predict(self.booster, x)

    def to_onnx(self) -> bytes:
        return onnx_export.lightgbm_to_onnx(self.booster)

    def to_bytes(self) -> bytes:
        return self.booster.model_to_string().encode()


def fit(trainer: str, schema: FeatureSchema, x: np.ndarray, y: np.ndarray, params: dict, seed: int, *,
        log_metric: LogMetric | None = None, checkpoint: Path | None = None, checkpoint_every: int = 1,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        on_checkpoint: Callable[[int], None] | None = None) -> TrainedModel:
    """Train the named trainer; checkpoints and a per-epoch validation curve apply to the MLP."""
    if trainer == "lightgbm":
        return LightGBMModel(train_lightgbm(schema, x, y, params, seed, log_metric))
    from appliance.training.mlp_trainer import train_mlp  # torch loads only for the MLP

    return train_mlp(schema, x, y, params, seed, log_metric=log_metric, checkpoint=checkpoint,
                     checkpoint_every=checkpoint_every, validation=validation, on_checkpoint=on_checkpoint)


def load_model(trainer: str, data: bytes) -> TrainedModel:
    """A model stored by ``to_bytes`` (LightGBM text, or MLP tensors loaded without pickle)."""
    if trainer == "lightgbm":
        return LightGBMModel(lgb.Booster(model_str=data.decode()))
    from appliance.training.mlp_trainer import load_mlp

    return load_mlp(data)

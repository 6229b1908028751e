"""The PyTorch tabular MLP: an embedding per category, standardized numbers with missing-value flags.

All preprocessing lives inside the module, so its ONNX export takes the same float32 feature
matrix as the LightGBM export and gives the same defined answer for NaN, ±inf and categories
it never saw. The head follows the task: one logit for binary, one per class (softmax) for
multiclass, one standardized value for regression, turned back into the target's unit inside the
module so the export answers the value itself.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from appliance import progress
from appliance.features.encoding import FeatureSchema
from appliance.scoring import metrics, onnx_model
from appliance.task import BINARY, Task, TaskKind
from appliance.training import stop
from appliance.training.lightgbm_trainer import default_threads

DEFAULT_PARAMS = {
    "epochs": 6,
    "batch_size": 512,
    "learning_rate": 0.003,
    "hidden": 64,
    "layers": 2,
    "embedding_dim": 8,
    "weight_decay": 1e-5,
}
ONNX_OPSET = 17
CLAMP = 10.0  # standardized inputs beyond ±10 σ are out of range: clamped, never extrapolated


class TabularMLP(nn.Module):
    """The task's raw output from encoded features (``logits``), and its ONNX output (``forward``): binary
    [N, 2] probabilities, multiclass [N, K] probabilities, regression the value [N, 1]."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.register_buffer("numeric", torch.tensor(config["numeric"], dtype=torch.long))
        self.register_buffer("log_scaled", torch.tensor(config["log_scaled"], dtype=torch.bool))
        self.register_buffer("mean", torch.tensor(config["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(config["std"], dtype=torch.float32))
        dim = config["embedding_dim"]
        self.categories = [(column, size) for column, size in config["categories"]]
        # index 0 is "missing or never seen"; category k of the vocabulary is k + 1
        self.embeddings = nn.ModuleList(nn.Embedding(size + 1, min(dim, size + 1)) for _, size in self.categories)
        width = 2 * len(config["numeric"]) + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for _ in range(config["layers"]):
            layers += [nn.Linear(width, config["hidden"]), nn.ReLU()]
            width = config["hidden"]
        layers.append(nn.Linear(width, config["classes"] if self.task_kind == "multiclass" else 1))
        self.head = nn.Sequential(*layers)

    @property
    def task_kind(self) -> TaskKind:
        return self.config.get("task", "binary")  # a model stored before tasks existed is binary

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw output, what the loss sees: a logit [N], K logits [N, K], or the standardized value [N]."""
        num = x.index_select(1, self.numeric)
        missing = torch.isnan(num)
        num = torch.where(missing, torch.zeros_like(num), num)
        num = torch.where(self.log_scaled, torch.sign(num) * torch.log1p(torch.abs(num)), num)
        parts = [torch.clamp((num - self.mean) / self.std, -CLAMP, CLAMP), missing.to(x.dtype)]
        for (column, size), embedding in zip(self.categories, self.embeddings):
            code = x[:, column]
            known = (code >= 0) & (code < size)  # False for NaN, for ±inf and for codes past the vocabulary
            parts.append(embedding(torch.where(known, code + 1, torch.zeros_like(code)).long()))
        out = self.head(torch.cat(parts, dim=1))
        return out if self.task_kind == "multiclass" else out.squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task_kind == "multiclass":
            return torch.softmax(self.logits(x), dim=1)
        if self.task_kind == "regression":  # trained on the standardized target: back to the target's unit
            return (self.logits(x) * self.config["target_std"] + self.config["target_mean"]).unsqueeze(1)
        p = torch.sigmoid(self.logits(x))
        return torch.stack([1 - p, p], dim=1)


def mlp_config(
    schema: FeatureSchema, x: np.ndarray, params: dict, task: Task = BINARY, y: np.ndarray | None = None
) -> dict:
    """The network's shape and its input scaling (and a regression target's), learnt from the training rows."""
    numeric = [i for i, c in enumerate(schema.columns) if c.type != "category"]
    log_scaled = [schema.columns[i].type == "float" for i in numeric]
    values = x[:, numeric].astype(np.float64)
    values[:, log_scaled] = np.sign(values[:, log_scaled]) * np.log1p(np.abs(values[:, log_scaled]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: mean 0, std 1 below
        mean = np.nan_to_num(np.nanmean(values, axis=0))
        std = np.nanstd(values, axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
    config = {
        "numeric": numeric,
        "log_scaled": log_scaled,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "categories": [[i, len(c.categories or [])] for i, c in enumerate(schema.columns) if c.type == "category"],
        "hidden": int(params["hidden"]),
        "layers": int(params["layers"]),
        "embedding_dim": int(params["embedding_dim"]),
        "task": task.kind,
        "classes": len(task.classes),
    }
    if task.kind == "regression":
        target = np.asarray(y, dtype=np.float64)
        spread = float(target.std()) if target.size else 1.0
        config["target_mean"] = float(target.mean()) if target.size else 0.0
        config["target_std"] = spread if spread > 1e-12 else 1.0  # a constant target: nothing to scale
    return config


class MLPModel:
    """A trained MLP with what it takes to predict, export and store it."""

    trainer = "mlp"

    def __init__(self, module: TabularMLP):
        self.module = module.cpu().eval()

    @property
    def task_kind(self) -> TaskKind:
        return self.module.task_kind

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The task's output natively on the CPU (the reference for ONNX parity): P(class 1) [n], each
        class's probability [n, k], or the value [n]."""
        # ``forward`` gives [N, 2], [N, K] or [N, 1]: the task's output is column 1, every column, or column 0
        columns = {"binary": 1, "multiclass": slice(None), "regression": 0}[self.task_kind]
        with torch.no_grad():
            chunks = [
                self.module(torch.from_numpy(np.ascontiguousarray(x[i : i + 65536])))[:, columns]
                for i in range(0, len(x), 65536)
            ]
        if not chunks:
            return np.empty((0, self.module.config["classes"]) if self.task_kind == "multiclass" else 0)
        return torch.cat(chunks).numpy().astype(np.float64)

    def to_onnx(self) -> bytes:
        """ONNX with a dynamic batch dimension, the same input and output names as the LightGBM export."""
        buffer = io.BytesIO()
        dummy = torch.zeros((2, max(self._width(), 1)), dtype=torch.float32)
        output = onnx_model.VALUE if self.task_kind == "regression" else onnx_model.PROBABILITIES
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; the dynamo one needs onnxscript
            torch.onnx.export(
                self.module,
                (dummy,),
                buffer,
                input_names=[onnx_model.INPUT_NAME],
                output_names=[output],
                opset_version=ONNX_OPSET,
                dynamo=False,
                dynamic_axes={onnx_model.INPUT_NAME: {0: "rows"}, output: {0: "rows"}},
            )
        return buffer.getvalue()

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"config": self.module.config, "state": self.module.state_dict()}, buffer)
        return buffer.getvalue()

    def _width(self) -> int:
        config = self.module.config
        return len(config["numeric"]) + len(config["categories"])


def load_mlp(data: bytes) -> MLPModel:
    """A stored MLP (tensors and plain values only: loaded with ``weights_only``, no pickle code runs)."""
    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    module = TabularMLP(saved["config"])
    module.load_state_dict(saved["state"])
    return MLPModel(module)


def device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_mlp(
    schema: FeatureSchema,
    x: np.ndarray,
    y: np.ndarray,
    params: dict,
    seed: int,
    *,
    task: Task = BINARY,
    log_metric: Callable[[str, float, int], None] | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 1,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> MLPModel:
    """Fit with AdamW on the task's loss: binary cross-entropy, cross-entropy over the classes, or squared
    error of the standardized target. With ``checkpoint``, save every N epochs and resume from there.

    ``y`` comes from ``task.labels``; with ``validation`` (rows, labels) each epoch logs the task's
    default metric on them (``validation_auc``, ``validation_macro_f1``, ``validation_rmse``).
    Each epoch's shuffle is seeded by (seed, epoch), so a run resumed from a checkpoint sees
    exactly the batches an uninterrupted run would have. ``on_checkpoint(epoch)`` runs after each
    save (the pipeline writes its queued metrics then, so the curve survives with the checkpoint).
    """
    params = {**DEFAULT_PARAMS, **params}
    torch.set_num_threads(default_threads())
    where = device()
    torch.manual_seed(seed)
    config = mlp_config(schema, x, params, task, y)
    module = TabularMLP(config).to(where)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=float(params["learning_rate"]), weight_decay=float(params["weight_decay"])
    )
    first_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=where, weights_only=True)
        same_task = (saved.get("task", "binary"), saved.get("classes", 2)) == (task.kind, len(task.classes))
        if saved["params"] == {k: str(v) for k, v in params.items()} and saved["seed"] == seed and same_task:
            module.load_state_dict(saved["state"])
            optimizer.load_state_dict(saved["optimizer"])
            first_epoch = saved["epoch"]
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(where)
    if task.kind == "multiclass":
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(where)
        loss_fn: nn.Module = nn.CrossEntropyLoss()
    elif task.kind == "regression":
        standardized = (np.asarray(y, dtype=np.float64) - config["target_mean"]) / config["target_std"]
        labels = torch.from_numpy(standardized.astype(np.float32)).to(where)
        loss_fn = nn.MSELoss()
    else:
        labels = torch.from_numpy(np.asarray(y, dtype=np.float32)).to(where)
        loss_fn = nn.BCEWithLogitsLoss()
    epochs, batch = int(params["epochs"]), int(params["batch_size"])
    with progress.step("epoch", epochs) as epochs_done:
        epochs_done.update(first_epoch)
        for epoch in range(first_epoch, epochs):
            module.train()
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            total = 0.0
            with progress.step("batch", -(-len(order) // batch)) as batches:  # an epoch of a GPU run takes minutes
                for start in range(0, len(order), batch):
                    rows = order[start : start + batch].to(where)
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(module.logits(features[rows]), labels[rows])
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(rows)
                    batches.advance()
            shown = {"loss": total / max(len(order), 1)}
            if log_metric is not None:
                log_metric("train_loss", shown["loss"], epoch)
                if validation is not None:
                    module.eval()
                    output = MLPModel(_copy(module)).predict(validation[0])
                    shown[f"valid {task.metric}"] = metrics.score(task, task.metric, validation[1], output)
                    log_metric(f"validation_{task.metric}", shown[f"valid {task.metric}"], epoch)
            epochs_done.update(epoch + 1, shown)
            stopping = stop.stop_requested() and epoch + 1 < epochs
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs or stopping):
                _save_checkpoint(checkpoint, module, optimizer, epoch + 1, params, seed, task)
                if on_checkpoint is not None:
                    on_checkpoint(epoch + 1)
            if stopping:  # at an epoch boundary, so the resumed run sees exactly the batches it would have
                stop.check(f"after epoch {epoch + 1} of {epochs} (checkpoint saved)")
    return MLPModel(module)


def _copy(module: TabularMLP) -> TabularMLP:
    clone = TabularMLP(module.config)
    clone.load_state_dict({k: v.detach().cpu() for k, v in module.state_dict().items()})
    return clone


def _save_checkpoint(
    path: Path, module: TabularMLP, optimizer: torch.optim.Optimizer, epoch: int, params: dict, seed: int, task: Task
) -> None:
    # Written beside and renamed over: a kill mid-write leaves the previous checkpoint whole.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "state": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "seed": seed,
            "params": {k: str(v) for k, v in params.items()},
            "task": task.kind,
            "classes": len(task.classes),
        },
        tmp,
    )
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""The PyTorch tabular MLP: an embedding per category, standardized numbers with missing-value flags.

All preprocessing lives inside the module, so its ONNX export takes the same float32 feature
matrix as the LightGBM export and gives the same defined answer for NaN, ±inf and categories
it never saw. The head follows the task: one logit for binary, one per class (softmax) for
multiclass, one standardized value for regression, turned back into the target's unit inside the
module so the export answers the value itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from appliance import progress
from appliance.errors import InvalidInput
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
    "amp": True,  # mixed precision on a GPU (bf16 where it has it, else fp16); the CPU always trains in fp32
}
# On a GPU a 512-row batch leaves it idle between kernel launches: unless the spec sets batch_size, a
# batch grows with the data up to this many rows, keeping at least MIN_STEPS_PER_EPOCH steps an epoch.
CUDA_BATCH_SIZE = 8192
MIN_STEPS_PER_EPOCH = 100
# The training rows are copied to the GPU once when they take at most this share of its free memory
# (the rest is the model's, the optimizer's and each batch's); else batches cross from pinned host memory.
RESIDENT_SHARE = 0.5
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


def batch_size(params: dict, rows: int, where: torch.device) -> int:
    """The spec's ``batch_size``; by default 512 rows on the CPU, and on a GPU as many as the data allows up to
    CUDA_BATCH_SIZE, keeping MIN_STEPS_PER_EPOCH steps an epoch (a small data set still learns in few epochs)."""
    if "batch_size" in params:
        return int(params["batch_size"])
    smallest = int(DEFAULT_PARAMS["batch_size"])
    if where.type != "cuda":
        return smallest
    return max(smallest, min(CUDA_BATCH_SIZE, rows // MIN_STEPS_PER_EPOCH))


def mixed_precision(params: dict, where: torch.device) -> torch.dtype | None:
    """The dtype autocast computes in on a GPU with ``amp`` on: bf16 where the GPU has it, else fp16 (with a
    gradient scaler); None (fp32) on the CPU or with ``amp = false``. The weights stay fp32 either way, so the
    ONNX export and its parity check are as without it."""
    amp = params["amp"]
    if not isinstance(amp, bool):
        raise InvalidInput(f"[training.params] amp = {amp!r}: give true (mixed precision on a GPU) or false")
    if where.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class TrainingRows:
    """The training rows where the batches are cut from.

    On the CPU, and on a GPU whose free memory holds them (RESIDENT_SHARE), they are copied to the device
    once: each epoch's order is drawn there and a batch is an index into them, so nothing crosses the bus
    and nothing waits on the host per batch. A set too large for the GPU stays in host memory, and each
    batch is gathered, pinned and copied without blocking while the GPU works on the one before.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, where: torch.device):
        features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        target = torch.from_numpy(labels)
        self.where = where
        self.resident = where.type != "cuda" or _fits_on_gpu(features.nbytes + target.nbytes, where)
        if self.resident:
            features, target = features.to(where), target.to(where)
        self.features, self.labels = features, target

    def __len__(self) -> int:
        return len(self.labels)

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """Every row once, shuffled by (seed, epoch) where the rows are: a resumed run sees the batches an
        uninterrupted one would. On the CPU it is the order the trainer always drew; a CUDA generator draws
        another, as reproducible."""
        generator = torch.Generator(device=self.features.device).manual_seed(seed * 100_003 + epoch)
        return torch.randperm(len(self), generator=generator, device=self.features.device)

    def batches(self, order: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(features, labels) of each ``size`` rows of ``order`` in turn, on the training device."""
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            x, y = self.features[rows], self.labels[rows]
            if not self.resident:
                x = x.pin_memory().to(self.where, non_blocking=True)
                y = y.pin_memory().to(self.where, non_blocking=True)
            yield x, y


def _fits_on_gpu(size: int, where: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(where)
    return size <= RESIDENT_SHARE * free


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
    on: torch.device | None = None,
) -> MLPModel:
    """Fit with AdamW on the task's loss: binary cross-entropy, cross-entropy over the classes, or squared
    error of the standardized target. With ``checkpoint``, save every N epochs and resume from there.

    ``y`` comes from ``task.labels``; with ``validation`` (rows, labels) each epoch logs the task's
    default metric on them (``validation_auc``, ``validation_macro_f1``, ``validation_rmse``).
    Each epoch's shuffle is seeded by (seed, epoch), so a run resumed from a checkpoint sees
    exactly the batches an uninterrupted run would have. ``on_checkpoint(epoch)`` runs after each
    save (the pipeline writes its queued metrics then, so the curve survives with the checkpoint).
    On a GPU the rows live on it (``TrainingRows``), batches are larger (``batch_size``) and the forward
    pass runs in mixed precision (``mixed_precision``); on the CPU training is as it always was. ``on``
    picks the device (default: CUDA when present), as a benchmark of one against the other does.
    """
    where = on or device()
    params = {**DEFAULT_PARAMS, **params, "batch_size": batch_size(params, len(y), where)}
    precision = mixed_precision(params, where)
    torch.set_num_threads(default_threads())
    torch.manual_seed(seed)
    config = mlp_config(schema, x, params, task, y)
    module = TabularMLP(config).to(where)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=float(params["learning_rate"]), weight_decay=float(params["weight_decay"])
    )
    # fp16's narrow range underflows small gradients: scaled up for backward, down before the step
    scaler = torch.amp.GradScaler("cuda") if precision == torch.float16 else None
    first_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=where, weights_only=True)
        same_task = (saved.get("task", "binary"), saved.get("classes", 2)) == (task.kind, len(task.classes))
        if saved["params"] == {k: str(v) for k, v in params.items()} and saved["seed"] == seed and same_task:
            module.load_state_dict(saved["state"])
            optimizer.load_state_dict(saved["optimizer"])
            if scaler is not None and "scaler" in saved:
                scaler.load_state_dict(saved["scaler"])
            first_epoch = saved["epoch"]
    if task.kind == "multiclass":
        labels = np.asarray(y, dtype=np.int64)
        loss_fn: nn.Module = nn.CrossEntropyLoss()
    elif task.kind == "regression":
        labels = ((np.asarray(y, dtype=np.float64) - config["target_mean"]) / config["target_std"]).astype(np.float32)
        loss_fn = nn.MSELoss()
    else:
        labels = np.asarray(y, dtype=np.float32)
        loss_fn = nn.BCEWithLogitsLoss()
    rows = TrainingRows(x, labels, where)
    epochs, batch = int(params["epochs"]), int(params["batch_size"])
    with progress.step("epoch", epochs) as epochs_done:
        epochs_done.update(first_epoch)
        for epoch in range(first_epoch, epochs):
            module.train()
            order = rows.order(seed, epoch)
            # summed where the loss is, in float64 (as a Python float summed it): read once an epoch, not per batch
            total = torch.zeros((), dtype=torch.float64, device=where)
            with progress.step("batch", -(-len(order) // batch)) as batches:  # an epoch of a GPU run takes minutes
                for features, target in rows.batches(order, batch):
                    optimizer.zero_grad(set_to_none=True)
                    autocast = torch.autocast(where.type, dtype=precision) if precision else contextlib.nullcontext()
                    with autocast:
                        loss = loss_fn(module.logits(features), target)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    total += loss.detach().double() * len(target)
                    batches.advance()
            shown = {"loss": float(total) / max(len(order), 1)}
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
                _save_checkpoint(checkpoint, module, optimizer, scaler, epoch + 1, params, seed, task)
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
    path: Path,
    module: TabularMLP,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    params: dict,
    seed: int,
    task: Task,
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
            **({"scaler": scaler.state_dict()} if scaler is not None else {}),
        },
        tmp,
    )
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)

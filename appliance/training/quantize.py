"""INT8 dynamic quantization of an ONNX model, kept as its own variant with its quality and speed."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np

from appliance.scoring import metrics, onnx_model
from appliance.task import BINARY, Task
from appliance.validation.probes import single_row_p99_ms


class QuantizedVariant(msgspec.Struct, frozen=True):
    onnx_sha256: str
    metric: str  # the metric measured: the task's, or the one asked for
    value: float  # the INT8 model's metric on the evaluation rows
    delta: float  # INT8 minus float32 on the evaluation rows (for rmse, above 0 is worse)
    p99_ms_float32: float
    p99_ms_int8: float
    latency_gain: float  # float32 p99 / INT8 p99 (above 1: INT8 is faster)


def quantize_int8(onnx_bytes: bytes) -> bytes:
    """Weights of MatMul/Gemm as INT8, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        source.write_bytes(onnx_bytes)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target.read_bytes()


def int8_variant(
    onnx_bytes: bytes,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    put: Callable[[bytes], str],
    task: Task = BINARY,
    metric: str | None = None,
) -> QuantizedVariant:
    """Quantize, store with ``put`` (bytes -> sha256), and measure against the float32 model on the
    task's metric (or ``metric``), with ``y_eval`` from ``task.labels``."""
    metric = metric or task.metric
    quantized = quantize_int8(onnx_bytes)

    def measured(model: bytes) -> float:
        output = onnx_model.predict(onnx_model.session(model, ["CPUExecutionProvider"]), x_eval, task)
        return metrics.score(task, metric, y_eval, output)

    float_value, int8_value = measured(onnx_bytes), measured(quantized)
    p99_float = single_row_p99_ms(onnx_bytes, x_eval, task=task)
    p99_int8 = single_row_p99_ms(quantized, x_eval, task=task)
    return QuantizedVariant(
        put(quantized),
        metric,
        int8_value,
        int8_value - float_value,
        p99_float,
        p99_int8,
        p99_float / p99_int8 if p99_int8 > 0 else float("nan"),
    )

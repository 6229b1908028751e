"""INT8 dynamic quantization of an ONNX model, kept as its own variant with its accuracy and speed."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np

from appliance.training import onnx_export
from appliance.training.metrics import roc_auc
from appliance.validation.probes import single_row_p99_ms


class QuantizedVariant(msgspec.Struct, frozen=True):
    onnx_sha256: str
    auc: float
    auc_delta: float            # INT8 minus float32 on the evaluation rows
    p99_ms_float32: float
    p99_ms_int8: float
    latency_gain: float         # float32 p99 / INT8 p99 (above 1: INT8 is faster)


def quantize_int8(onnx_bytes: bytes) -> bytes:
    """Weights of MatMul/Gemm as INT8, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        source.write_bytes(onnx_bytes)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target.read_bytes()


def int8_variant(onnx_bytes: bytes, x_eval: np.ndarray, y_eval: np.ndarray,
                 put: Callable[[bytes], str]) -> QuantizedVariant:
    """Quantize, store with ``put`` (bytes -> sha256), and measure against the float32 model."""
    quantized = quantize_int8(onnx_bytes)
    float_auc = roc_auc(y_eval, onnx_export.predict_proba(onnx_export.session(onnx_bytes, ["CPUExecutionProvider"]),
                                                          x_eval))
    int8_auc = roc_auc(y_eval, onnx_export.predict_proba(onnx_export.session(quantized, ["CPUExecutionProvider"]),
                                                         x_eval))
    p99_float, p99_int8 = single_row_p99_ms(onnx_bytes, x_eval), single_row_p99_ms(quantized, x_eval)
    return QuantizedVariant(put(quantized), int8_auc, int8_auc - float_auc, p99_float, p99_int8,
                            p99_float / p99_int8 if p99_int8 > 0 else float("nan"))

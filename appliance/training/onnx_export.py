"""Export to ONNX, and the parity check every exported model must pass before it is registered."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from appliance.task import BINARY, Task

if TYPE_CHECKING:  # a server loads this module to score: LightGBM (with scikit-learn, SciPy) is 1.5 s of its start
    import lightgbm as lgb
    import onnx

# onnxmltools' LightGBM converter supports ai.onnx opsets up to 15.
TARGET_OPSET = 15
INPUT_NAME = "features"
PROBABILITIES = "probabilities"   # classifiers: float [N, K], a probability per class in the task's class order
VALUE = "value"                   # regression: float [N, 1], the predicted value


def lightgbm_to_onnx(booster: lgb.Booster) -> bytes:
    """The booster as a serialized ONNX model with float input [N, F] and the task's output: probabilities
    [N, K] for a classifier (K = 2 for binary), the value [N, 1] for regression."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    n_features = booster.num_feature()
    model = onnxmltools.convert_lightgbm(
        booster, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False, target_opset=TARGET_OPSET,
    )
    if any(node.op_type == "TreeEnsembleRegressor" for node in model.graph.node):
        _rename_output(model.graph, model.graph.output[0].name, VALUE)  # the converter calls it 'variable'
    model.graph.name = "lightgbm"  # the converter names graphs with a random uuid; keep bytes reproducible
    # It also lists opsets in set order, which varies with the process's string hash seed.
    opsets = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    return model.SerializeToString()


def _rename_output(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a graph output, and the node output that produces it, so the graph stays connected."""
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    for output in graph.output:
        if output.name == old:
            output.name = new


def session(onnx_bytes: bytes, providers: list[str] | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session tuned for small requests: one intra-op thread, quiet logs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the converter's label output has a static shape; ORT warns per call
    available = ort.get_available_providers()
    chosen = [p for p in (providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]) if p in available]
    return ort.InferenceSession(onnx_bytes, options, providers=chosen)


def predict_proba(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """Probability of the positive class for each row of a float32 matrix (binary models)."""
    return sess.run([PROBABILITIES], {INPUT_NAME: x})[0][:, 1]


def predict(sess: ort.InferenceSession, x: np.ndarray, task: Task) -> np.ndarray:
    """The task's output for each row of a float32 matrix (see ``appliance.task``): the probability of
    class 1 [N], every class's probability [N, K], or the value [N]."""
    if task.kind == "binary":
        return predict_proba(sess, x)
    if task.kind == "multiclass":
        return sess.run([PROBABILITIES], {INPUT_NAME: x})[0]
    return sess.run([VALUE], {INPUT_NAME: x})[0].reshape(len(x))


def parity(sess: ort.InferenceSession, native: np.ndarray, x: np.ndarray, task: Task = BINARY) -> float:
    """How far ONNX Runtime's outputs are from the native model's on the same rows.

    Classifiers: the largest absolute difference of a probability. Regression: the largest absolute
    difference of a value as a share of the values' root mean square. ONNX computes in float32, which
    carries about seven significant digits whatever the target's unit: a price near 100 000 is off by
    about 0.01 from rounding alone, a rate near 0.001 by 1e-10, and both are the same parity.
    """
    if not len(x):
        return 0.0
    native = np.asarray(native, dtype=np.float64)
    gap = float(np.max(np.abs(predict(sess, x, task).astype(np.float64) - native)))
    if task.kind != "regression":
        return gap
    scale = float(np.sqrt(np.mean(np.square(native))))
    return gap / scale if scale > 0 else gap

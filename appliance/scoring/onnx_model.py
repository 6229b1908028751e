"""An exported model as ONNX Runtime runs it: its input and output names, a session, the task's output per
row, and the parity check every exported model must pass before it is registered."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from appliance.task import BINARY, Task

INPUT_NAME = "features"
PROBABILITIES = "probabilities"  # classifiers: float [N, K], a probability per class in the task's class order
VALUE = "value"  # regression: float [N, 1], the predicted value


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

"""An exported model as ONNX Runtime runs it: its input and output names, a session, the provider that
serves it, the task's output per row, and the parity check every exported model must pass before it is
registered.

Which provider serves a model (``[serving] provider``): "cpu"; "cuda", falling back to the CPU when
ONNX Runtime offers no CUDA provider or the session cannot be created on it; or "auto", which asks for
CUDA only where it can pay: when ONNX Runtime offers it and the model is not a tree ensemble. ONNX
Runtime implements the tree ensemble operators (``ai.onnx.ml`` TreeEnsembleClassifier/Regressor, what
LightGBM exports to) on the CPU only: on the CUDA provider a LightGBM model of any size still walks its
trees on the CPU, with a copy to the GPU and back around them, so "auto" keeps every tree ensemble on
the CPU (``scripts/device/serve_gpu_check.py`` measures a large one both ways). An MLP's matrix products
run on the GPU, where a batch of rows costs about what one does.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnxruntime as ort

from appliance.task import BINARY, Task

INPUT_NAME = "features"
PROBABILITIES = "probabilities"  # classifiers: float [N, K], a probability per class in the task's class order
VALUE = "value"  # regression: float [N, 1], the predicted value
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
ProviderSetting = Literal["auto", "cpu", "cuda"]


def session(onnx_bytes: bytes, providers: list[str] | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session tuned for small requests: one intra-op thread, quiet logs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the converter's label output has a static shape; ORT warns per call
    available = ort.get_available_providers()
    chosen = [p for p in (providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]) if p in available]
    return ort.InferenceSession(onnx_bytes, options, providers=chosen)


def serving_session(onnx_bytes: bytes, setting: ProviderSetting) -> tuple[ort.InferenceSession, str | None]:
    """A session on the provider ``setting`` asks for, and why CPU serves where CUDA was asked for (None when
    it was not, or CUDA serves). The provider serving is ``session.get_providers()[0]``."""
    offered = CUDA in ort.get_available_providers()
    wanted = setting == "cuda" or (setting == "auto" and offered and gains_from_cuda(onnx_bytes))
    if not wanted:
        return session(onnx_bytes, [CPU]), None
    if not offered:
        why = "ONNX Runtime offers no CUDA provider here (install onnxruntime-gpu, and a CUDA driver)"
        return session(onnx_bytes, [CPU]), why
    try:
        sess = session(onnx_bytes, [CUDA, CPU])
    except Exception as e:  # a driver, library or memory problem: the CPU still serves
        return session(onnx_bytes, [CPU]), f"the CUDA session could not be created: {e}"
    if sess.get_providers()[0] != CUDA:  # ONNX Runtime dropped the provider it could not start
        return sess, "ONNX Runtime could not start its CUDA provider (see its log)"
    return sess, None


def gains_from_cuda(onnx_bytes: bytes) -> bool:
    """Whether a model can gain from the CUDA provider, which "auto" then asks for where ONNX Runtime offers
    it: any graph but a tree ensemble, whose operators ONNX Runtime runs on the CPU only (see the module's
    docstring)."""
    import onnx  # read only where CUDA is offered: parsing costs about the model's size

    graph = onnx.load_from_string(onnx_bytes).graph
    return not any(node.op_type.startswith("TreeEnsemble") for node in graph.node)


def predict_proba(sess: ort.InferenceSession, x: np.ndarray, bound: bool = False) -> np.ndarray:
    """Probability of the positive class for each row of a float32 matrix (binary models)."""
    if bound:
        return _bound_run(sess, PROBABILITIES, x)[:, 1]
    return sess.run([PROBABILITIES], {INPUT_NAME: x})[0][:, 1]


def predict(sess: ort.InferenceSession, x: np.ndarray, task: Task, bound: bool = False) -> np.ndarray:
    """The task's output for each row of a float32 matrix (see ``appliance.task``): the probability of
    class 1 [N], every class's probability [N, K], or the value [N]. ``bound``: through an I/O binding, as
    a session on the CUDA provider runs (``_bound_run``)."""
    if task.kind == "binary":
        return predict_proba(sess, x, bound)
    name = PROBABILITIES if task.kind == "multiclass" else VALUE
    out = _bound_run(sess, name, x) if bound else sess.run([name], {INPUT_NAME: x})[0]
    return out if task.kind == "multiclass" else out.reshape(len(x))


def _bound_run(sess: ort.InferenceSession, name: str, x: np.ndarray) -> np.ndarray:
    # On the CUDA provider: the rows are bound from host memory (copied to the GPU once, with no
    # intermediate OrtValue per call) and the one output is bound to the CPU, where the answer is read, so
    # ONNX Runtime copies it back once and allocates nothing else on the host. A binding per call: the
    # event loop and the shadow scorer may share a session.
    binding = sess.io_binding()
    binding.bind_cpu_input(INPUT_NAME, np.ascontiguousarray(x, dtype=np.float32))
    binding.bind_output(name, "cpu")
    sess.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]


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

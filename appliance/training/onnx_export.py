"""Export a LightGBM booster to ONNX with the input and output names every served model has
(``appliance.scoring.onnx_model``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.scoring.onnx_model import INPUT_NAME, VALUE

if TYPE_CHECKING:  # for types only: LightGBM (with scikit-learn, SciPy) is 1.5 s of an import
    import lightgbm as lgb
    import onnx

# onnxmltools' LightGBM converter supports ai.onnx opsets up to 15.
TARGET_OPSET = 15


def lightgbm_to_onnx(booster: lgb.Booster) -> bytes:
    """The booster as a serialized ONNX model with float input [N, F] and the task's output: probabilities
    [N, K] for a classifier (K = 2 for binary), the value [N, 1] for regression."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    n_features = booster.num_feature()
    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=TARGET_OPSET,
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

"""A version's ONNX graph as another engine serves it, and the tensors it takes and gives, read from the graph.

The registry's graph keeps what its converter made: LightGBM's classifiers also give ``label``, the arg-max
class, declared with a fixed shape [1] (it is [rows]) that a batching engine refuses, and which is not the
appliance's answer anyway (a binary label follows the spec's threshold). The engines get the graph with the
one output the appliance reads (``probabilities`` or ``value``); MLflow's pyfunc, which returns a table of
one column per output and flattens each, gets the probabilities split into a column per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

from appliance.errors import Conflict
from appliance.export import CLASS_OUTPUT_PREFIX
from appliance.scoring.onnx_model import PROBABILITIES, VALUE
from appliance.task import Task


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: its name, element type (ONNX's number) and shape, the rows first
    (None where a dimension is not fixed)."""

    name: str
    elem_type: int
    shape: tuple[int | None, ...]

    @property
    def type_name(self) -> str:
        """The element type's ONNX name: FLOAT, DOUBLE, INT64, …"""
        return TensorProto.DataType.Name(self.elem_type)


def answer_output(task: Task) -> str:
    """The output the appliance reads for a task."""
    return VALUE if task.kind == "regression" else PROBABILITIES


def served_graph(onnx_bytes: bytes, task: Task) -> onnx.ModelProto:
    """The version's graph with only the output the appliance reads; Conflict if it lacks it."""
    model = onnx.load_from_string(onnx_bytes)
    wanted = answer_output(task)
    kept = [o for o in model.graph.output if o.name == wanted]
    if not kept:
        names = ", ".join(o.name for o in model.graph.output)
        raise Conflict(
            f"the version's ONNX has no output '{wanted}' (it has {names}); it cannot be exported as a "
            f"{task.kind} model"
        )
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


def per_class_outputs(model: onnx.ModelProto, task: Task) -> tuple[onnx.ModelProto, list[str]]:
    """A classifier's graph (``served_graph``) with its probabilities split into one output [rows, 1] per
    class, named ``probability_<class>`` in the task's class order; a regression graph as it is. The
    outputs' names."""
    if task.kind == "regression":
        return model, [VALUE]
    names = [f"{CLASS_OUTPUT_PREFIX}{text}" for text in task.class_text()]
    source = model.graph.output[0]
    split = helper.make_node("Split", [PROBABILITIES], names, name="per_class", axis=1)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= 18:  # from opset 18 an even split names its number of parts
        split.attribute.append(helper.make_attribute("num_outputs", len(names)))
    model.graph.node.append(split)
    del model.graph.output[:]
    elem_type = source.type.tensor_type.elem_type
    model.graph.output.extend(helper.make_tensor_value_info(n, elem_type, ["rows", 1]) for n in names)
    onnx.checker.check_model(model)
    return model, names


def tensors(values) -> list[TensorSpec]:
    """The graph inputs' or outputs' specs, as the graph declares them."""
    specs = []
    for v in values:
        tensor = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
        specs.append(TensorSpec(v.name, tensor.elem_type, shape))
    return specs

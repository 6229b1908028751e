"""A Triton Inference Server model repository: ``MODEL/config.pbtxt`` and ``MODEL/VERSION/model.onnx``.

The config's inputs and outputs, their data types and dimensions are read from the ONNX graph written beside
it, not assumed; the rows are Triton's batch dimension, up to the spec's ``[serving] max_batch_rows``, and
dynamic batching waits up to its ``max_wait_ms``, as the appliance's micro-batching did. The version folder
is the appliance's version number, so Triton's answers name the version the prediction log files them under.
The shared files (``bundle``) lie beside the model folder, where Triton, which loads folders only, ignores them.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from appliance.errors import Conflict
from appliance.export.bundle import VersionToExport
from appliance.export.graph import TensorSpec, served_graph, tensors
from storage.backup import write_file

# ONNX element types → Triton's data types.
TRITON_TYPES = {
    "FLOAT": "TYPE_FP32",
    "DOUBLE": "TYPE_FP64",
    "FLOAT16": "TYPE_FP16",
    "INT64": "TYPE_INT64",
    "INT32": "TYPE_INT32",
    "INT8": "TYPE_INT8",
    "UINT8": "TYPE_UINT8",
    "BOOL": "TYPE_BOOL",
    "STRING": "TYPE_STRING",
}


def write_triton(exported: VersionToExport, stage: Path) -> tuple[list[dict], str]:
    """The model folder (config and graph); model.json's outputs and the README's part on calling it."""
    graph = served_graph(exported.onnx_bytes, exported.task)
    folder = stage / exported.model
    write_file(folder / str(exported.version.version) / "model.onnx", graph.SerializeToString())
    inputs, outputs = tensors(graph.graph.input), tensors(graph.graph.output)
    write_file(folder / "config.pbtxt", triton_config(exported, inputs, outputs).encode())
    return [_output(exported, o) for o in outputs], _calling(exported, outputs[0])


def triton_config(exported: VersionToExport, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> str:
    """config.pbtxt for the graph's tensors; Conflict for a tensor Triton cannot batch or type."""
    delay_us = round(exported.max_wait_ms * 1000)
    listed = ",\n".join(_tensor(t) for t in inputs), ",\n".join(_tensor(t) for t in outputs)
    return (
        f"name: {json.dumps(exported.model)}\n"
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {exported.max_batch_rows}\n"
        f"input [\n{listed[0]}\n]\n"
        f"output [\n{listed[1]}\n]\n"
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {delay_us}\n}}\n"
    )


def _tensor(t: TensorSpec) -> str:
    if not t.shape or t.shape[0] is not None:
        raise Conflict(
            f"the graph's tensor '{t.name}' has shape {list(t.shape)}: Triton batches rows along a first "
            "dimension of any size, and this graph fixes it; re-register the model with a dynamic first dimension"
        )
    data_type = TRITON_TYPES.get(t.type_name)
    if data_type is None:
        raise Conflict(f"the graph's tensor '{t.name}' is of type {t.type_name}, which Triton does not serve")
    dims = [-1 if d is None else d for d in t.shape[1:]]
    # A tensor of rows alone ([rows]) is [rows, 1] to Triton, reshaped back to the model's shape.
    reshape = "" if dims else "\n    reshape: { shape: [ ] }"
    return (
        f"  {{\n    name: {json.dumps(t.name)}\n    data_type: {data_type}\n"
        f"    dims: [ {', '.join(map(str, dims or [1]))} ]{reshape}\n  }}"
    )


def _output(exported: VersionToExport, t: TensorSpec) -> dict:
    meaning = (
        "each row's predicted value"
        if exported.task.kind == "regression"
        else "each row's probability of each class, in task.classes order"
    )
    return {"name": t.name, "dtype": t.type_name.lower(), "shape": list(t.shape), "meaning": meaning}


def _calling(exported: VersionToExport, output: TensorSpec) -> str:
    v = exported.version
    request = {
        "inputs": [
            {
                "name": "features",
                "shape": [1, len(exported.schema.columns)],
                "datatype": "FP32",
                "data": exported.example(),
            }
        ],
        "outputs": [{"name": output.name}],
    }
    return f"""## Serving it with Triton

`{v.model}/` is a Triton model repository entry (ONNX Runtime backend); the files beside it are for people
and for the appliance. Serve the folder as it is, or copy `{v.model}/` into an existing repository:

```sh
tritonserver --model-repository=$PWD
curl -s localhost:8000/v2/models/{v.model}/versions/{v.version}/infer -d {shlex.quote(json.dumps(request))}
```

The row in that request is one of the version's reference rows. Triton batches concurrent requests
(dynamic batching, up to {exported.max_batch_rows} rows) and answers `{output.name}` per row."""

"""An MLflow model directory that ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` take as it is,
written without MLflow from its documented format.

``MLmodel`` (YAML) names two flavors: ``onnx`` (the graph, ``model.onnx``, and the onnx version) and
``python_function``, whose loader ``mlflow.onnx`` runs the graph in ONNX Runtime. The pyfunc feeds a table's
values, in its column order, to a graph of one input, and returns a table of one column per output; so the
signature lists the model's features in input order, each a ``double`` (the encoded value, as a JSON
number reads), and the graph gives one output per class (``graph.per_class_outputs``). ``input_example.json``
is one of the version's reference rows, encoded. ``requirements.txt``, ``python_env.yaml`` and ``conda.yaml``
pin the onnx and ONNX Runtime the appliance runs.
"""

from __future__ import annotations

import json
import platform
import shlex
import uuid
from datetime import UTC, datetime
from importlib.metadata import version as installed
from pathlib import Path

from appliance.export.bundle import VersionToExport
from appliance.export.graph import per_class_outputs, served_graph, tensors
from storage.backup import write_file

# ONNX element types → MLflow's column types.
MLFLOW_TYPES = {"FLOAT": "float", "DOUBLE": "double", "INT64": "long", "INT32": "integer", "BOOL": "boolean"}
INPUT_EXAMPLE = "input_example.json"


def write_mlflow(exported: VersionToExport, stage: Path) -> tuple[list[dict], str]:
    """MLmodel, model.onnx, the environment files and the input example; model.json's outputs and the
    README's part on calling it."""
    graph, names = per_class_outputs(served_graph(exported.onnx_bytes, exported.task), exported.task)
    write_file(stage / "model.onnx", graph.SerializeToString())
    outputs = tensors(graph.graph.output)
    columns = [c.name for c in exported.schema.columns]
    signature_outputs = [{"name": o.name, "type": MLFLOW_TYPES.get(o.type_name, "double")} for o in outputs]
    requirements = [f"onnx=={installed('onnx')}", f"onnxruntime=={installed('onnxruntime')}", "mlflow", "pandas"]
    write_file(stage / "MLmodel", yaml_text(mlmodel(exported, columns, signature_outputs)).encode())
    write_file(stage / "requirements.txt", ("\n".join(requirements) + "\n").encode())
    python_env = {
        "python": platform.python_version(),
        "build_dependencies": ["pip", "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }
    write_file(stage / "python_env.yaml", yaml_text(python_env).encode())
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": requirements}],
    }
    write_file(stage / "conda.yaml", yaml_text(conda).encode())
    example = {"columns": columns, "data": [exported.example()]}
    write_file(stage / INPUT_EXAMPLE, json.dumps(example).encode())
    meanings = [f"the probability of class {c}" for c in exported.task.class_text()] or ["each row's predicted value"]
    described = [
        {"name": n, "dtype": o.type_name.lower(), "shape": list(o.shape), "meaning": m}
        for n, o, m in zip(names, outputs, meanings)
    ]
    return described, _calling(exported, example)


def mlmodel(exported: VersionToExport, columns: list[str], outputs: list[dict]) -> dict:
    """The MLmodel document: its flavors, signature (features in input order) and input example."""
    v = exported.version
    env = {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    return {
        "flavors": {
            "onnx": {
                "code": None,
                "data": "model.onnx",
                "onnx_version": installed("onnx"),
                "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            },
            "python_function": {
                "data": "model.onnx",
                "env": env,
                "loader_module": "mlflow.onnx",
                "python_version": platform.python_version(),
            },
        },
        "metadata": {"appliance_model": v.model, "appliance_version": v.version, "artifact_sha256": v.artifact_sha256},
        "model_uuid": uuid.UUID(v.artifact_sha256[:32]).hex,
        "run_id": v.run_id,
        "saved_input_example_info": {"artifact_path": INPUT_EXAMPLE, "pandas_orient": "split", "type": "dataframe"},
        "signature": {
            "inputs": json.dumps([{"name": name, "type": "double"} for name in columns]),
            "outputs": json.dumps(outputs),
            "params": None,
        },
        "utc_time_created": datetime.fromtimestamp(v.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }


def yaml_text(document: dict) -> str:
    """A document of mappings, lists and scalars as block YAML; every string JSON-quoted (a JSON string is
    a YAML double-quoted scalar), so no value reads as another type."""
    return "\n".join(_yaml_lines(document, 0)) + "\n"


def _yaml_lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
        return lines
    assert isinstance(value, list), "a document holds mappings, lists and scalars"
    for item in value:
        if isinstance(item, (dict, list)) and item:
            nested = _yaml_lines(item, indent + 2)
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{pad}- {json.dumps(item)}")
    return lines


def _calling(exported: VersionToExport, example: dict) -> str:
    body = json.dumps({"dataframe_split": example})
    return f"""## Serving it with MLflow

This folder is an MLflow model (flavors `onnx` and `python_function`); its signature lists the features in
input order, each the encoded value as a number. Load it or serve it as it is:

```sh
mlflow models serve -m $PWD --env-manager local -p 5001
curl -s localhost:5001/invocations -H 'content-type: application/json' -d {shlex.quote(body)}
```

or `mlflow.pyfunc.load_model(path).predict(frame)` on a pandas frame of those columns. The answer is a table
with a column per output (`model.json`: `outputs`); the row in that request is one of the version's reference
rows (`{INPUT_EXAMPLE}`)."""

"""The formats `appliance export` writes, by name, and the export of one version in one of them."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.errors import InvalidInput
from appliance.export.bundle import ExportedModel, VersionToExport, Writer, export_version, version_to_export
from appliance.export.graph import tensors
from appliance.export.mlflow_model import write_mlflow
from appliance.export.triton_repository import write_triton
from appliance.home import Home
from storage.backup import write_file


def write_onnx_bundle(exported: VersionToExport, stage: Path) -> tuple[list[dict], str]:
    """The registry's ONNX bytes as they are; model.json's outputs and the README's part on calling it."""
    import onnx

    write_file(stage / "model.onnx", exported.onnx_bytes)
    outputs = tensors(onnx.load_from_string(exported.onnx_bytes).graph.output)
    described = [{"name": o.name, "dtype": o.type_name.lower(), "shape": list(o.shape)} for o in outputs]
    example = json.dumps([exported.example()])
    calling = f"""## Calling it

`model.onnx` is the version's graph exactly as the appliance serves it (its sha256 is `artifact_sha256` in
`model.json`). Any ONNX runtime runs it; in Python:

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx")
rows = np.array({example}, dtype=np.float32).reshape(-1, {len(exported.schema.columns)})  # None reads as NaN
print(session.run(None, {{"features": rows}}))
```

The row is one of the version's reference rows. The appliance reads `probabilities` (classifiers) or `value`
(regression); a LightGBM classifier's `label` is the most likely class, not the spec's threshold."""
    return described, calling


FORMATS: dict[str, Writer] = {"triton": write_triton, "mlflow": write_mlflow, "onnx-bundle": write_onnx_bundle}


def export_model(home: Home, model: str, version: int, fmt: str, out: Path | None = None) -> ExportedModel:
    """Export a registered version in a format into ``out`` (default: MODEL-vVERSION-FORMAT here)."""
    writer = FORMATS.get(fmt)
    if writer is None:
        raise InvalidInput(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    exported = version_to_export(home, model, version)
    return export_version(exported, fmt, out or Path(f"{model}-v{version}-{fmt}"), writer)

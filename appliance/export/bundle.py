"""`appliance export`: one registered version written as another engine serves it, with what it was trained
on beside it.

Every format carries the same four files beside the model: ``model.json`` (the input: each feature's
name, position, type, where its value comes from and how it is encoded; the task and its classes; the
outputs), ``features.json`` (the feature definitions the version was trained with: entity key, event time,
request features, entity attributes, aggregations, derived features), ``reference.parquet`` (the version's
monitoring reference) and a ``README.md`` that says how to call it. The formats differ in how the model
itself is laid out (``triton_repository``, ``mlflow_model``, and the plain ``model.onnx`` of an
``onnx-bundle``, the registry's bytes as they are).

The folder is filled beside its destination and renamed into place at the end, so a failed export leaves
nothing; a destination that holds anything is refused.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import polars as pl

import appliance
from appliance.data.declared import model_task
from appliance.errors import Conflict, InvalidInput
from appliance.features.encoding import FeatureSchema
from appliance.home import Home
from appliance.monitoring.reference import load_reference
from appliance.registry import ModelVersion
from appliance.spec import FeaturesSection
from appliance.task import Task
from storage.backup import staged_folder, write_file

MODEL_JSON, FEATURES_JSON, REFERENCE, README = "model.json", "features.json", "reference.parquet", "README.md"

_ENCODINGS = {
    "float": "the number as float32",
    "integer": "the number as float32",
    "boolean": "1 for true, 0 for false",
    "category": "its index in `categories` (from 0); a value not listed there reads as missing",
}


@dataclass(frozen=True)
class VersionToExport:
    """What an export reads of one registered version."""

    version: ModelVersion
    onnx_bytes: bytes
    schema: FeatureSchema
    definitions: FeaturesSection
    task: Task
    reference: pl.DataFrame
    max_batch_rows: int  # the spec's [serving] limits, which an engine's batching takes over
    max_wait_ms: float

    @property
    def model(self) -> str:
        return self.version.model

    def example(self) -> list[float | None]:
        """One real input row, encoded: the first reference row with every feature present (else the first),
        missing values as None."""
        encoded = self.schema.encode_frame(self.reference.head(200))
        complete = np.flatnonzero(~np.isnan(encoded).any(axis=1))
        row = encoded[complete[0] if complete.size else 0]
        return [None if math.isnan(v) else float(v) for v in row.tolist()]


@dataclass(frozen=True)
class ExportedModel:
    """A finished export: its folder and the files in it, relative to that folder."""

    out: Path
    files: list[str]


# A format writes the model's own files into the (staged) folder, and returns model.json's "outputs" and the
# README's part on calling it.
Writer = Callable[[VersionToExport, Path], tuple[list[dict], str]]


def version_to_export(home: Home, model: str, version: int) -> VersionToExport:
    """The version's ONNX bytes, encoding, definitions, task and reference; NotFound for an unknown one."""
    found = home.registry.version(model, version)
    spec = home.spec(model)
    schema = msgspec.convert(found.feature_schema, FeatureSchema)
    return VersionToExport(
        found,
        home.artifacts.get(found.artifact_sha256),
        schema,
        schema.definitions or spec.features,
        model_task(spec),
        load_reference(home, model, version),
        spec.serving.max_batch_rows,
        spec.serving.max_wait_ms,
    )


def export_version(exported: VersionToExport, fmt: str, out: Path, writer: Writer) -> ExportedModel:
    """Write the version in one format (``writer``) with the shared files into ``out``, atomically."""
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} is not empty; pass --out with a new or empty folder")
    try:
        with staged_folder(out) as stage:
            outputs, calling = writer(exported, stage)
            write_file(stage / MODEL_JSON, _json(model_document(exported, outputs)))
            write_file(stage / FEATURES_JSON, _json(features_document(exported)))
            buffer = io.BytesIO()
            exported.reference.write_parquet(buffer)
            write_file(stage / REFERENCE, buffer.getvalue())
            write_file(stage / README, readme(exported, fmt, calling).encode())
            files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    except FileExistsError:
        raise Conflict(
            f"{out} was filled by someone else meanwhile; nothing was written — choose a new folder"
        ) from None
    except OSError as e:
        raise InvalidInput(f"the export to {out} stopped ({e}); nothing was kept — fix what the error names") from None
    return ExportedModel(out, files)


def input_columns(exported: VersionToExport) -> list[dict]:
    """The model input's columns in order: name, type, where the value comes from, how it is encoded."""
    definitions = exported.definitions
    sources = {f.name: "request" for f in definitions.request}
    sources |= {f.name: "entity_attributes" for f in definitions.entity_attributes}
    sources |= {a.name: "aggregations" for a in definitions.aggregations}
    sources |= {d.name: "derived" for d in definitions.derived}
    columns = []
    for i, c in enumerate(exported.schema.columns):
        column = {"index": i, "name": c.name, "type": c.type, "source": sources.get(c.name, "request")}
        column["encoding"] = _ENCODINGS.get(c.type, "the number as float32")
        if c.categories is not None:
            column["categories"] = c.categories
        columns.append(column)
    return columns


def model_document(exported: VersionToExport, outputs: list[dict]) -> dict:
    """model.json: the version, its task, its input's columns and its outputs."""
    v, task = exported.version, exported.task
    return {
        "model": v.model,
        "version": v.version,
        "exported_by": f"appliance {appliance.__version__}",
        "artifact_sha256": v.artifact_sha256,
        "task": {"kind": task.kind, "classes": list(task.classes), "threshold": task.threshold},
        "input": {
            "name": "features",
            "dtype": "float32",
            "shape": [None, len(exported.schema.columns)],
            "missing": "NaN: the model's defined answer for a missing value",
            "columns": input_columns(exported),
        },
        "outputs": outputs,
        "metrics": v.metrics,
        "data_version": v.data_version,
        "code_version": v.code_version,
        "run_id": v.run_id,
    }


def features_document(exported: VersionToExport) -> dict:
    """features.json: the feature definitions the version was trained with, and its entity key's type."""
    return msgspec.to_builtins(exported.definitions) | {
        "key_type": exported.schema.key_type,
        "key_nullable": exported.schema.key_nullable,
    }


def readme(exported: VersionToExport, fmt: str, calling: str) -> str:
    """README.md: what the folder holds, how to call the model, and how its answers come back."""
    v = exported.version
    names = ", ".join(f"`{c.name}`" for c in exported.schema.columns)
    return f"""# {v.model} v{v.version} ({fmt})

Exported by the appliance from its registry (artifact `{v.artifact_sha256[:12]}`, run `{v.run_id[:8]}`).

The model takes one float32 input `features` of shape [rows, {len(exported.schema.columns)}]: {names}, in
that order. `model.json` says, per column, where its value comes from (the request, the entity's attributes,
an aggregation over its history, or a derived feature: `features.json` holds the definitions) and how it is
encoded (categories as their index, booleans as 1/0, a missing value as NaN).

{calling}

## Monitoring from here

`reference.parquet` is the version's held-out rows with its outputs on them: what the appliance compares
served traffic with. Log each answered request (its time, the request's fields, the answer) and hand the file
back with `appliance ingest-log {v.model} FILE`: the appliance monitors, alerts and retrains from it.
"""


def _json(document: dict) -> bytes:
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"

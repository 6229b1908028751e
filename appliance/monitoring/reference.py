"""The monitoring reference of a model version: its held-out evaluation rows with their
out-of-sample scores and labels, stored once when the version is registered.

Stored as a Parquet artifact of the version's training run (name ``reference.parquet``), so a
monitor run reads it back instead of rebuilding features and re-scoring every time.
"""

from __future__ import annotations

import io

import polars as pl

from appliance.errors import NotFound
from appliance.home import Home
from appliance.spec import ModelSpec
from appliance.training.metrics import binary_metrics

ARTIFACT = "reference.parquet"
SCORE = "_score"   # the version's ONNX probability for each evaluation row


def reference_bytes(spec: ModelSpec, eval_part: pl.DataFrame, scores) -> bytes:
    """The evaluation rows (event time, entity key, model features, label) and scores, as Parquet."""
    keep = [spec.features.event_time, spec.features.entity_key, *(f.name for f in spec.model_features),
            spec.target.column]
    frame = eval_part.select([c for c in keep if c in eval_part.columns]).with_columns(
        pl.Series(SCORE, scores, dtype=pl.Float64))
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def reference_metrics(reference: pl.DataFrame, label: str, threshold: float) -> dict[str, float]:
    """A version's held-out metrics (AUC, positive rate, …) recomputed from its reference frame's labelled
    rows and their out-of-sample scores; empty without both classes."""
    labelled = reference.drop_nulls([SCORE, label])
    if labelled[label].n_unique() < 2:
        return {}
    return binary_metrics(labelled[label].to_numpy(), labelled[SCORE].to_numpy(), threshold)


def load_reference(home: Home, model: str, version: int) -> pl.DataFrame:
    """A version's reference frame; versions registered before references were stored have none."""
    run_id = home.registry.version(model, version).run_id
    rows = home.tracking.query("SELECT sha256 FROM artifacts WHERE run_id = ? AND name = ?", (run_id, ARTIFACT))
    if not rows:
        raise NotFound(f"version {version} of '{model}' has no monitoring reference (it was registered "
                       f"before references were stored); train a new version with `appliance train {model}`")
    return pl.read_parquet(io.BytesIO(home.artifacts.get(rows[0]["sha256"])))

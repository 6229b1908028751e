"""Labelled traffic as a data batch: predictions whose outcomes came back as feedback, shaped by the
model's data contract and ingested like any file, so a retrain learns from the newest labelled rows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from appliance.data.contract import load_contract
from appliance.data.ingest import IngestReport, ingest
from appliance.home import Home
from appliance.spec import ModelSpec
from appliance.serving.state import PREDICTIONS_DB
from storage.prediction_log import PredictionStore


def labelled_batch(home: Home, spec: ModelSpec) -> pl.DataFrame | None:
    """The model's labelled predictions with the contract's columns; None when none has a label yet.

    A contract field the request did not carry is filled from the prediction's request id when it is a
    unique string (a transaction id), and left empty otherwise (so the contract quarantines the row)."""
    path = home.root / PREDICTIONS_DB
    if not path.exists():
        return None
    store = PredictionStore(path)
    try:
        rows = store.labelled(spec.name)
    finally:
        store.close()
    if not rows:
        return None
    records = [json.loads(r["features_json"]) for r in rows]
    frame = pl.DataFrame(records, infer_schema_length=None)
    contract = load_contract(spec.resolve(spec.data.contract))
    ids = pl.Series([f"{r['request_id']}:{r['position']}" for r in rows])
    columns = []
    for field in contract.fields:
        if field.name == spec.target.column:
            columns.append(pl.Series(field.name, [int(r["outcome"] >= spec.target.threshold) for r in rows]))
        elif field.name in frame.columns:
            columns.append(frame[field.name])
        elif field.unique and field.type == "string":
            columns.append(ids.alias(field.name))
        else:
            columns.append(pl.Series(field.name, [None] * len(rows)))
    return pl.DataFrame(columns)


def ingest_feedback(home: Home, spec: ModelSpec) -> IngestReport | None:
    """Ingest the labelled predictions as a batch (unchanged content makes no new snapshot)."""
    batch = labelled_batch(home, spec)
    if batch is None:
        return None
    folder: Path = home.root / "feedback"
    folder.mkdir(exist_ok=True)
    path = folder / f"{spec.name}.parquet"
    batch.write_parquet(path)
    return ingest(home.conn, home.offline, spec.name, load_contract(spec.resolve(spec.data.contract)), path)

"""Labelled traffic as a data batch: predictions whose outcomes came back as feedback, shaped by the
model's data contract and ingested like any file, so a retrain learns from the newest labelled rows.

Each batch holds only the outcomes that arrived since the previous batch (its file name carries the
newest outcome's arrival time), so the model's snapshots never hold a labelled row twice."""

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


def labelled_batch(home: Home, spec: ModelSpec, since: float = 0.0) -> tuple[pl.DataFrame, float] | None:
    """The model's predictions labelled after ``since`` with the contract's columns, and the newest
    label's arrival time; None when there are none.

    A contract field the request did not carry is filled from the prediction's request id when it is a
    unique string (a transaction id), and left empty otherwise (so the contract quarantines the row)."""
    path = home.root / PREDICTIONS_DB
    if not path.exists():
        return None
    store = PredictionStore(path)
    try:
        rows = store.labelled(spec.name, since)
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
    return pl.DataFrame(columns), max(r["received_at"] for r in rows)


def ingest_feedback(home: Home, spec: ModelSpec) -> IngestReport | None:
    """Ingest the outcomes that arrived since the last batch; None when there are none."""
    folder: Path = home.root / "feedback"
    sources = home.conn.execute("SELECT source FROM ingests WHERE model = ? AND source LIKE ?",
                                (spec.name, f"{folder}/{spec.name}-%.parquet")).fetchall()
    since = max((float(Path(r[0]).stem.rsplit("-", 1)[1]) for r in sources), default=0.0)
    found = labelled_batch(home, spec, since)
    if found is None:
        return None
    batch, newest = found
    folder.mkdir(exist_ok=True)
    path = folder / f"{spec.name}-{newest!r}.parquet"  # repr: the exact float, read back by float()
    batch.write_parquet(path)
    return ingest(home.conn, home.offline, spec.name, load_contract(spec.resolve(spec.data.contract)), path)

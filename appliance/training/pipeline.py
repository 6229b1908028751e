"""The training pipeline: ingest → features → train → evaluate → export → gates → register."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
import polars as pl

from appliance.data.contract import load_contract
from appliance.data.ingest import IngestReport, ingest
from appliance.data.snapshots import data_version, list_snapshots, read_snapshots
from appliance.data.sources import read_source
from appliance.features.encoding import FeatureSchema
from appliance.features.training_set import build_training_set, split_by_time
from appliance.home import Home
from appliance.registry import ModelVersion
from appliance.spec import ModelSpec
from appliance.training import onnx_export
from appliance.training.code_version import code_version
from appliance.training.lightgbm_trainer import native_predict, train_lightgbm
from appliance.training.metrics import binary_metrics
from appliance.training.runs import finish_run, start_run
from appliance.validation.gates import GateReport, evaluate_gates


class TrainingOutcome(msgspec.Struct):
    version: ModelVersion
    gates: GateReport
    ingest: IngestReport
    train_rows: int
    eval_rows: int
    cutoff: str
    seconds: float


def ingest_source(home: Home, spec: ModelSpec) -> IngestReport:
    """Ingest the spec's data source (identical content makes no new snapshot)."""
    contract = load_contract(spec.resolve(spec.data.contract))
    return ingest(home.conn, home.offline, spec.name, contract, spec.resolve(spec.data.source))


def train(home: Home, spec: ModelSpec, actor: str = "cli",
          say: Callable[[str], None] = lambda _: None) -> TrainingOutcome:
    """Run the whole pipeline for one model and register the result (rejected if a gate fails)."""
    started = time.perf_counter()
    params = {**spec.training.params, "seed": spec.training.seed}
    run_id = start_run(home.conn, spec.name, "train", params, code_version())
    try:
        report = ingest_source(home, spec)
        say(f"ingested {report.rows_read:,} rows: {report.accepted:,} accepted, "
            f"{report.quarantined:,} quarantined → snapshot {report.snapshot.hash[:12]}"
            + ("" if report.new_snapshot else " (unchanged)"))
        snapshots = list_snapshots(home.conn, spec.name)
        events = read_snapshots(home.offline, snapshots)
        entities = read_source(spec.resolve(spec.data.entities)) if spec.data.entities else None
        frame = build_training_set(spec, events, entities)
        train_part, eval_part, cutoff = split_by_time(spec, frame)

        schema = FeatureSchema.learn(spec.model_features, train_part, spec.features)
        x_train, x_eval = schema.encode_frame(train_part), schema.encode_frame(eval_part)
        y_train = train_part[spec.target.column].cast(pl.Int8).to_numpy()
        y_eval = eval_part[spec.target.column].cast(pl.Int8).to_numpy()
        booster = train_lightgbm(schema, x_train, y_train, dict(spec.training.params), spec.training.seed)
        p_eval = native_predict(booster, x_eval)
        metrics = binary_metrics(y_eval, p_eval, spec.target.threshold)
        say(f"trained LightGBM on {train_part.height:,} rows before {cutoff:%Y-%m-%d}, evaluated on "
            f"{eval_part.height:,}: AUC {metrics['auc']:.4f}, precision {metrics['precision']:.3f}, "
            f"recall {metrics['recall']:.3f}, F1 {metrics['f1']:.3f}, log loss {metrics['log_loss']:.4f}")

        onnx_bytes = onnx_export.lightgbm_to_onnx(booster)
        parity_diff = onnx_export.parity(onnx_export.session(onnx_bytes, ["CPUExecutionProvider"]),
                                         p_eval, x_eval)
        gates = evaluate_gates(spec.validation, metrics, parity_diff)
        digest = home.artifacts.put(onnx_bytes)
        version = home.registry.register_version(
            spec.name, status="registered" if gates.passed else "rejected", artifact_sha256=digest,
            feature_schema=msgspec.to_builtins(schema), metrics=metrics, params=params,
            gate_report=msgspec.to_builtins(gates), data_version=data_version(snapshots),
            code_version=code_version(), run_id=run_id, actor=actor,
        )
        finish_run(home.conn, run_id, status="succeeded", metrics=metrics | {"onnx_parity": parity_diff},
                   snapshots=[s.hash for s in snapshots])
    except BaseException as e:
        finish_run(home.conn, run_id, status="failed", error=f"{type(e).__name__}: {e}")
        raise
    return TrainingOutcome(version=version, gates=gates, ingest=report, train_rows=train_part.height,
                           eval_rows=eval_part.height, cutoff=cutoff.isoformat(),
                           seconds=time.perf_counter() - started)


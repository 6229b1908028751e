"""The stages of a training run. Each returns its outputs as a Struct (recorded with the stage as its JSON)
and can restore them, so a failed run resumes at the stage that failed with everything before it as it was.

The recorded JSON is what ``appliance runs show``, the admin API and a resumed run read: a field added to an
outputs Struct takes a default, so the rows of runs recorded before it still convert."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec
import numpy as np
import polars as pl

from appliance.data.declared import (
    check_entity_file,
    check_spec_types,
    entity_key_type,
    model_contract,
    model_task,
)
from appliance.data.ingest import IngestReport, ingest, latest_quarantine
from appliance.data.snapshots import (
    Snapshot,
    data_version,
    list_snapshots,
    read_snapshots,
)
from appliance.data.sources import read_source
from appliance.errors import InvalidInput, NotFound
from appliance.features.encoding import FeatureSchema
from appliance.features.training_set import (
    build_training_set,
    retrain_cutoff,
    split_at,
    split_by_time,
)
from appliance.home import Home
from appliance.monitoring.reference import ARTIFACT as REFERENCE_ARTIFACT
from appliance.monitoring.reference import reference_bytes
from appliance.registry import ModelVersion
from appliance.scoring import onnx_model
from appliance.scoring.metrics import baseline_score, evaluate, score
from appliance.spec import ModelSpec
from appliance.task import (
    BINARY,
    Task,
    higher_is_better,
    label_text,
    metric_label,
    metrics_line,
)
from appliance.tracking import TrackedRun
from appliance.tracking.code_version import code_version
from appliance.training import runs
from appliance.training.lightgbm_trainer import default_threads
from appliance.training.quantize import QuantizedVariant, int8_variant
from appliance.training.search import Trial, random_search
from appliance.training.trainers import TrainedModel, fit, load_model
from appliance.validation.comparison import evaluation_label, lacking_features, version_output
from appliance.validation.gates import GateEvidence, GateReport, SameRows, evaluate_gates
from appliance.validation.paired import Difference, paired_difference
from appliance.validation.probes import (
    recall_at_precision,
    robustness_failures,
    segment_scores,
    single_row_latency,
)


@dataclass
class RunContext:
    """What the stages of one run hand each other. What a stage makes is None until it ran or was restored;
    each stage asserts what it reads of the stages before it."""

    home: Home
    spec: ModelSpec
    run: TrackedRun
    say: Callable[[str], None]
    actor: str = "cli"
    retrain: bool = False  # a retrain: fresh labels are ingested and only the newest days are held out
    ingest: IngestReport | None = None
    feedback_rows: int = 0  # a retrain's newly labelled predictions, accepted into a snapshot
    snapshots: list[Snapshot] = field(default_factory=list)
    learnt_before: ModelVersion | None = None  # a retrain's ingest found nothing new: the version trained on it
    events: pl.DataFrame | None = None
    train_part: pl.DataFrame | None = None
    eval_part: pl.DataFrame | None = None
    cutoff: datetime | None = None
    schema: FeatureSchema | None = None
    task: Task = BINARY
    x_train: np.ndarray | None = None
    y_train: np.ndarray | None = None
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    model: TrainedModel | None = None
    params: dict = field(default_factory=dict)  # what the final model was trained with (seed and trainer too)
    metrics: dict = field(default_factory=dict)
    onnx_bytes: bytes = b""
    parity: float = math.nan
    gates: GateReport | None = None
    version: ModelVersion | None = None

    @property
    def checkpoints(self) -> Path:
        """This run's checkpoints (in the data directory, so a restarted run finds them)."""
        return self.home.layout.run_checkpoints(self.run.id)

    def drop_checkpoints(self) -> None:
        shutil.rmtree(self.checkpoints, ignore_errors=True)


def ingest_source(home: Home, spec: ModelSpec) -> IngestReport:
    """Ingest the spec's data source (identical content makes no new snapshot)."""
    contract = model_contract(spec)
    check_spec_types(spec, contract)
    return ingest(
        home.conn, home.offline, spec.name, contract, spec.resolve(spec.data.source), horizon=spec.data.horizon
    )


def training_frame(spec: ModelSpec, events: pl.DataFrame) -> pl.DataFrame:
    """The one place the pipeline builds its training frame from snapshot rows."""
    entities = read_source(spec.resolve(spec.data.entities)) if spec.data.entities else None
    if entities is not None:
        check_entity_file(spec, entities)  # the file may have changed since the model was registered
    return build_training_set(spec, events, entities)


def evaluation_split(spec: ModelSpec, frame: pl.DataFrame, retrain: bool = False):
    """(training rows, held-out evaluation rows, cutoff): the last ``eval_days`` days, or for a retrain
    the newest days that hold enough of each class (see ``retrain_cutoff``)."""
    if not retrain:
        return split_by_time(spec, frame)
    return split_at(spec, frame, retrain_cutoff(spec, frame), "training.retrain_eval_days")


def snapshots_by_hash(home: Home, model: str, hashes: list[str]) -> list[Snapshot]:
    """The recorded snapshots of a run, in its order; one no longer recorded is an error."""
    known = {s.hash: s for s in list_snapshots(home.conn, model)}
    missing = [h[:12] for h in hashes if h not in known]
    if missing:
        raise InvalidInput(f"snapshot(s) {', '.join(missing)} of model '{model}' are no longer recorded")
    return [known[h] for h in hashes]


# -- ingest --------------------------------------------------------------------------------------


class FeedbackOutputs(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A retrain's newly labelled predictions. When none came back there is no batch: only ``accepted`` (0)
    is recorded."""

    snapshot: str | None = None
    rows_read: int | None = None
    accepted: int
    quarantined: int | None = None


class IngestOutputs(msgspec.Struct, frozen=True, omit_defaults=True):
    snapshot: str  # the source's snapshot (unchanged content: the existing one)
    new_snapshot: bool
    rows_read: int
    accepted: int
    quarantined: int
    snapshots: list[str]  # every snapshot the run reads, oldest first
    feedback: FeedbackOutputs | None = None  # a retrain's only: a training run records no such key
    training_digest: str | None = None  # the spec's sections that shape a model from these snapshots (training_digest)
    learnt_before: int | None = None  # a retrain with nothing new: the version already trained on all of it


def run_ingest(ctx: RunContext) -> IngestOutputs:
    report = ingest_source(ctx.home, ctx.spec)
    ctx.ingest = report
    feedback = _ingest_feedback(ctx) if ctx.retrain else None
    if feedback is not None:
        ctx.feedback_rows = feedback.accepted
    ctx.snapshots = list_snapshots(ctx.home.conn, ctx.spec.name)
    ctx.run.log_data([s.hash for s in ctx.snapshots])
    ctx.say(
        f"ingested {report.rows_read:,} rows: {report.accepted:,} accepted, "
        f"{report.quarantined:,} quarantined → snapshot {report.snapshot.hash[:12]}"
        + ("" if report.new_snapshot else " (unchanged)")
    )
    for warning in report.warnings:
        ctx.say(f"warning: {warning}")
    digest = training_digest(ctx.spec)
    # A person's `train` always trains (they may mean to, after a change the digest does not cover); a retrain
    # that would learn from exactly what a version learnt from ends here instead of registering its twin.
    ctx.learnt_before = _learnt_before(ctx, digest) if ctx.retrain else None
    return IngestOutputs(
        snapshot=report.snapshot.hash,
        new_snapshot=report.new_snapshot,
        rows_read=report.rows_read,
        accepted=report.accepted,
        quarantined=report.quarantined,
        snapshots=[s.hash for s in ctx.snapshots],
        feedback=feedback,
        training_digest=digest,
        learnt_before=ctx.learnt_before.version if ctx.learnt_before else None,
    )


def restore_ingest(ctx: RunContext, outputs: IngestOutputs) -> None:
    ctx.snapshots = snapshots_by_hash(ctx.home, ctx.spec.name, outputs.snapshots)
    ctx.feedback_rows = outputs.feedback.accepted if outputs.feedback is not None else 0


def _ingest_feedback(ctx: RunContext) -> FeedbackOutputs:
    """A retrain learns from the outcomes that came back since the last batch, contract-checked like a file.

    Outcomes that came back of which the contract accepted none fail the stage, with the reasons counted:
    a retrain that learnt nothing new must not report success. The run stays resumable."""
    from appliance.training.feedback_batch import ingest_feedback

    fresh = ingest_feedback(ctx.home, ctx.spec)
    if fresh is None:
        ctx.say("no newly labelled predictions since the last retrain")
        return FeedbackOutputs(accepted=0)
    ctx.say(
        f"ingested {fresh.rows_read:,} newly labelled predictions: {fresh.accepted:,} accepted, "
        f"{fresh.quarantined:,} quarantined → snapshot {fresh.snapshot.hash[:12]}"
        + (f"; see them with `appliance data quarantine {ctx.spec.name}`" if fresh.quarantined else "")
    )
    for warning in fresh.warnings:
        ctx.say(f"warning: {warning}")
    return FeedbackOutputs(
        snapshot=fresh.snapshot.hash, rows_read=fresh.rows_read, accepted=fresh.accepted, quarantined=fresh.quarantined
    )


def training_digest(spec: ModelSpec) -> str:
    """sha256 of what, beside the snapshots and the code, decides the model a run trains and its verdict: the
    spec's [features], [target], [training] (but its schedule) and [validation] sections, and the entity file."""
    sections = {
        "features": spec.features,
        "target": spec.target,
        "validation": spec.validation,
        "training": msgspec.structs.replace(spec.training, schedule=None),
        "entities": _file_digest(spec.resolve(spec.data.entities)) if spec.data.entities else None,
    }
    return hashlib.sha256(json.dumps(msgspec.to_builtins(sections), sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes, or of each file's name and bytes in a folder; None when there is none (the
    features stage says so)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else ''}\0".encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _learnt_before(ctx: RunContext, digest: str) -> ModelVersion | None:
    """The newest version this pipeline trained on exactly these snapshots, with this code, from a spec of the
    same ``training_digest``: a retrain would learn nothing from them that it did not. Registered or rejected
    alike (the twin of a rejected version would be rejected too); runs recorded before the digest never match."""
    wanted, code = data_version(ctx.snapshots), code_version()
    for version in reversed(ctx.home.registry.versions(ctx.spec.name)):
        if version.data_version != wanted or version.code_version != code:
            continue
        try:
            stages = runs.pipeline_run(ctx.home.conn, version.run_id).stages
        except NotFound:
            continue
        if any(s.stage == "ingest" and s.outputs.get("training_digest") == digest for s in stages):
            return version
    return None


def nothing_new(ctx: RunContext) -> str:
    """What a retrain that found nothing new says: the version whose data it is, the snapshots, the labels."""
    version = ctx.learnt_before
    assert version is not None, "found by the ingest"
    hashes = [s.hash[:12] for s in ctx.snapshots]
    shown = ", ".join(hashes[:3]) + (f" and {len(hashes) - 3} more" if len(hashes) > 3 else "")
    rejected = ", which its gates rejected," if version.status == "rejected" else ""
    return (
        f"nothing new to learn from: the data is what v{version.version}{rejected} trained on (snapshot"
        f"{'s' if len(hashes) > 1 else ''} {shown}, {ctx.feedback_rows} new labelled predictions), with the "
        f"same spec and code; no version registered. A retrain learns once new labels or a new batch arrive; "
        f"`appliance train {ctx.spec.name}` trains anyway"
    )


# -- validate data -------------------------------------------------------------------------------


class ValidateOutputs(msgspec.Struct, frozen=True):
    rows: int
    quarantined_share: float  # of the newest batch
    missing_share: dict[str, float]  # feature -> share of rows without a value


def run_validate(ctx: RunContext) -> ValidateOutputs:
    rules = ctx.spec.validation
    newest = ctx.snapshots[-1]
    quarantined_share = newest.quarantined / max(newest.rows + newest.quarantined, 1)
    ctx.events = read_snapshots(ctx.home.offline, ctx.snapshots)
    present = [f.name for f in ctx.spec.model_features if f.name in ctx.events.columns]
    missing = {c: ctx.events[c].null_count() / max(ctx.events.height, 1) for c in present}
    problems = []
    if quarantined_share > rules.max_quarantined_share:
        problems.append(
            f"{quarantined_share:.1%} of the newest batch was quarantined (> {rules.max_quarantined_share:.0%})"
        )
    problems += [
        f"feature '{c}' is missing in {share:.1%} of rows (> {rules.max_missing_share:.0%})"
        for c, share in missing.items()
        if share > rules.max_missing_share
    ]
    # First what no limit in the spec answers (the data or the [target] section must change; labels outside
    # the classes are also what a high quarantined share would otherwise be blamed on).
    target_problems = _target_problems(ctx, ctx.events)
    if target_problems:
        raise InvalidInput(
            f"data validation failed: {'; '.join(target_problems)}; then train again "
            f"(`appliance train {ctx.spec.name}` ingests the source anew)"
        )
    if problems:
        raise InvalidInput(
            f"data validation failed: {'; '.join(problems)}. Fix the source (or the "
            f"[validation] limits in the spec) and resume with `appliance train {ctx.spec.name} "
            "--resume`"
        )
    ctx.say(
        f"data valid: {ctx.events.height:,} rows, {quarantined_share:.2%} quarantined, worst missing share "
        f"{max(missing.values(), default=0):.2%}"
    )
    return ValidateOutputs(ctx.events.height, quarantined_share, missing)


def _target_problems(ctx: RunContext, events: pl.DataFrame) -> list[str]:
    """What about the target's values does not fit the task: labels a binary model would misread, a class
    the spec does not declare (those rows were quarantined at ingest), a single class, a constant value."""
    spec, target = ctx.spec, ctx.spec.target.column
    if target not in events.columns:
        return []
    values = events[target].drop_nulls()
    task = model_task(spec)
    undeclared = _undeclared_classes(ctx) if task.kind == "multiclass" else []
    if undeclared:
        shown = ", ".join(repr(v) for v in undeclared[:10])
        return [
            (
                f"the target '{target}' holds labels that are not among the classes {list(task.classes)}: "
                f"{shown} (those rows were quarantined); add them to [target] classes (and the contract's "
                "allowed_values) or fix the data"
            )
        ]
    if task.kind == "binary":
        found = sorted({label_text(v) for v in values.unique().to_list()})
        if not set(found) <= set(task.class_text()):
            coded = "0/1 or true/false" if task.flags else f"{task.classes[0]!r} or {task.classes[1]!r}"
            return [
                (
                    f"the binary target '{target}' holds {found[:10]}; a binary target is {coded} — "
                    'for more classes set task = "multiclass" under [target], for a number task = "regression"'
                )
            ]
    if task.classifier:
        present = {label_text(v) for v in values.unique().to_list()}
        if len(present) < 2:
            return [
                (
                    f"the target '{target}' has a single class ({', '.join(sorted(present)) or 'no labels'}); "
                    "a classifier needs rows of at least two"
                )
            ]
        absent = [c for c in task.classes if label_text(c) not in present]
        if absent:
            return [
                (
                    f"the target '{target}' has no rows of class(es) {absent}; remove them from [target] "
                    "classes or add rows of them"
                )
            ]
        return []
    finite = values.cast(pl.Float64)
    if finite.is_infinite().any() or finite.is_nan().any():
        return [
            (
                f"the regression target '{target}' holds NaN or infinite values; fix them in the source "
                "(leave a value empty where it is unknown: unlabelled rows are left out of training)"
            )
        ]
    if finite.n_unique() < 2:
        return [f"the regression target '{target}' has a single value ({finite[0]}); there is nothing to learn"]
    return []


def _undeclared_classes(ctx: RunContext) -> list:
    """Target labels of the newest batch quarantined for being outside the classes, from its quarantine file."""
    target = ctx.spec.target.column
    path = latest_quarantine(ctx.home.conn, ctx.spec.name, ctx.snapshots[-1].hash)
    if path is None:
        return []
    quarantined = pl.read_parquet(ctx.home.offline.root / path)
    if target not in quarantined.columns:
        return []
    outside = quarantined.filter(pl.col("reason").str.contains(f"{target}: not an allowed value", literal=True))
    return sorted(outside[target].drop_nulls().unique().to_list(), key=str)


def restore_validate(ctx: RunContext, outputs: ValidateOutputs) -> None:
    pass  # nothing later stages need: features re-reads the snapshots it was given


# -- build features ------------------------------------------------------------------------------


class FeaturesOutputs(msgspec.Struct, frozen=True):
    training_set: str  # the training frame in the offline store, by content hash
    rows: int
    train_rows: int
    eval_rows: int
    cutoff: str  # the first evaluation instant, as isoformat() writes it ("+00:00", not "Z")


def run_features(ctx: RunContext) -> FeaturesOutputs:
    events = ctx.events if ctx.events is not None else read_snapshots(ctx.home.offline, ctx.snapshots)
    frame = training_frame(ctx.spec, events)
    digest, _ = ctx.home.offline.write(f"{ctx.spec.name}/training_sets", frame)
    train_part, eval_part, cutoff = _use_frame(ctx, frame)
    return FeaturesOutputs(digest, frame.height, train_part.height, eval_part.height, cutoff.isoformat())


def restore_features(ctx: RunContext, outputs: FeaturesOutputs) -> None:
    _use_frame(ctx, pl.read_parquet(ctx.home.offline.path(f"{ctx.spec.name}/training_sets", outputs.training_set)))


def _use_frame(ctx: RunContext, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, datetime]:
    """Split the training frame and encode both parts for the stages after; (training rows, evaluation rows,
    cutoff)."""
    ctx.task = model_task(ctx.spec)
    train_part, eval_part, cutoff = evaluation_split(ctx.spec, frame, ctx.retrain)
    ctx.train_part, ctx.eval_part, ctx.cutoff = train_part, eval_part, cutoff
    ctx.schema = FeatureSchema.learn(ctx.spec.model_features, train_part, ctx.spec.features, entity_key_type(ctx.spec))
    ctx.x_train, ctx.y_train = _xy(ctx, train_part)
    ctx.x_eval, ctx.y_eval = _xy(ctx, eval_part)
    return train_part, eval_part, cutoff


def _xy(ctx: RunContext, part: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    assert ctx.schema is not None, "the schema is learnt from the training rows first"
    target = part[ctx.spec.target.column]
    return ctx.schema.encode_frame(part), ctx.task.labels(target)


# -- train ---------------------------------------------------------------------------------------


class SearchOutputs(msgspec.Struct, frozen=True):
    best: str  # the best trial's name
    trials: list[Trial]


class TrainOutputs(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    search: SearchOutputs | None = None  # with training.search.trials > 0: a run without records no such key
    trainer: str
    model: str  # the native model's artifact
    params: dict  # what the final model was trained with (seed and trainer too)
    threads: int  # LightGBM's sums depend on the thread count: a reproduction uses the same
    device: str


def run_train(ctx: RunContext) -> TrainOutputs:
    assert ctx.schema is not None and ctx.x_train is not None and ctx.y_train is not None, "made by features"
    training = ctx.spec.training
    params, search = dict(training.params), None
    if training.search.trials > 0:
        best, trials = _search(ctx, params)
        params = best.params
        ctx.run.set_tags({"best_trial": best.name, "best_trial_run": best.run_id})
        search = SearchOutputs(best.name, trials)
        ctx.say(
            f"search: {len(trials)} trials, best {best.name} (validation {metric_label(ctx.spec.metric)} "
            f"{best.validation_score:.4f}) "
            f"with {_short(best.params)}"
        )
    ctx.model = fit(
        training.trainer,
        ctx.schema,
        ctx.x_train,
        ctx.y_train,
        params,
        training.seed,
        task=ctx.task,
        log_metric=ctx.run.log_metric,
        checkpoint=ctx.checkpoints / "final.pt",
        checkpoint_every=training.checkpoint_every,
        on_checkpoint=lambda _: ctx.run.store.flush(),
    )
    ctx.params = {**params, "seed": training.seed, "trainer": training.trainer}
    if search is not None:  # the run's params are the spec's; the final model's are the best trial's
        ctx.run.log_params({f"final.{k}": v for k, v in ctx.params.items()})
    digest = ctx.run.log_artifact("model.native", ctx.model.to_bytes())
    return TrainOutputs(
        search=search,
        trainer=training.trainer,
        model=digest,
        params=ctx.params,
        threads=default_threads(),
        device=_device(training.trainer),
    )


def restore_train(ctx: RunContext, outputs: TrainOutputs) -> None:
    ctx.model = load_model(outputs.trainer, ctx.home.artifacts.get(outputs.model))
    ctx.params = outputs.params


def _search(ctx: RunContext, base: dict) -> tuple[Trial, list[Trial]]:
    schema, training = ctx.schema, ctx.spec.training
    assert schema is not None and ctx.train_part is not None, "made by features"
    fit_part, validation_part, _ = split_by_time(
        ctx.spec, ctx.train_part, training.search.validation_days, "training.search.validation_days"
    )
    x_fit, y_fit = _xy(ctx, fit_part)
    x_val, y_val = _xy(ctx, validation_part)

    def score_trial(name: str, params: dict) -> tuple[str, float]:
        with ctx.run.child(name) as trial:
            trial.log_params(params)
            model = fit(
                training.trainer,
                schema,
                x_fit,
                y_fit,
                params,
                training.seed,
                task=ctx.task,
                log_metric=trial.log_metric,
                checkpoint=ctx.checkpoints / f"{name}.pt",
                checkpoint_every=training.checkpoint_every,
                validation=(x_val, y_val),
                on_checkpoint=lambda _: trial.store.flush(),
            )
            value = score(ctx.task, metric, y_val, model.predict(x_val))
            trial.log_metric(f"validation_{metric}", value)
            return trial.id, value

    metric = ctx.spec.metric
    return random_search(training.search, base, training.seed, score_trial, higher_is_better(metric))


def _device(trainer: str) -> str:
    if trainer != "mlp":
        return "cpu"
    from appliance.training.mlp_trainer import device

    return str(device())


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


# -- evaluate ------------------------------------------------------------------------------------


class EvaluateOutputs(msgspec.Struct, frozen=True):
    metrics: dict[str, float]  # the task's metrics on the evaluation rows


def run_evaluate(ctx: RunContext) -> EvaluateOutputs:
    assert ctx.model is not None, "made by train"
    assert (
        ctx.x_eval is not None and ctx.y_eval is not None and ctx.train_part is not None and ctx.eval_part is not None
    ), "made by features"
    output = ctx.model.predict(ctx.x_eval)
    ctx.metrics = evaluate(ctx.task, ctx.y_eval, output)
    if ctx.task.kind == "binary":
        ctx.metrics["recall_at_precision"] = recall_at_precision(
            ctx.y_eval, output, ctx.spec.validation.recall_at_precision
        )
    ctx.run.log_metrics({f"eval_{k}": v for k, v in ctx.metrics.items()}, step=0)
    ctx.say(
        f"trained {ctx.spec.training.trainer} on {ctx.train_part.height:,} rows before {ctx.cutoff:%Y-%m-%d}, "
        f"evaluated on {ctx.eval_part.height:,}: {metrics_line(ctx.task.kind, ctx.metrics)}"
    )
    return EvaluateOutputs(ctx.metrics)


def restore_evaluate(ctx: RunContext, outputs: EvaluateOutputs) -> None:
    ctx.metrics = outputs.metrics


# -- export --------------------------------------------------------------------------------------


class ExportOutputs(msgspec.Struct, frozen=True):
    onnx: str  # the ONNX artifact
    parity: float  # ONNX Runtime against the native model (onnx_model.parity)
    int8: QuantizedVariant | None = None  # with training.quantize; recorded as null without


def run_export(ctx: RunContext) -> ExportOutputs:
    assert ctx.model is not None, "made by train"
    assert ctx.x_eval is not None and ctx.y_eval is not None, "made by features"
    ctx.onnx_bytes = ctx.model.to_onnx()
    sess = onnx_model.session(ctx.onnx_bytes, ["CPUExecutionProvider"])
    ctx.parity = onnx_model.parity(sess, ctx.model.predict(ctx.x_eval), ctx.x_eval, ctx.task)
    digest = ctx.run.log_artifact("model.onnx", ctx.onnx_bytes)
    ctx.run.log_metric("onnx_parity", ctx.parity, step=0)
    variant = None
    if ctx.spec.training.quantize:
        variant = int8_variant(
            ctx.onnx_bytes,
            ctx.x_eval,
            ctx.y_eval,
            task=ctx.task,
            metric=ctx.spec.metric,
            put=lambda data: ctx.run.log_artifact("model.int8.onnx", data),
        )
        ctx.run.log_metrics(
            {
                f"int8_{variant.metric}": variant.value,
                f"int8_{variant.metric}_delta": variant.delta,
                "int8_p99_ms": variant.p99_ms_int8,
                "float32_p99_ms": variant.p99_ms_float32,
                "int8_latency_gain": variant.latency_gain,
            },
            step=0,
        )
        ctx.say(
            f"INT8 variant {variant.onnx_sha256[:12]}: {metric_label(variant.metric)} {variant.value:.4f} "
            f"({variant.delta:+.4f}), p99 {variant.p99_ms_int8:.3f} ms vs {variant.p99_ms_float32:.3f} ms float32 "
            f"(×{variant.latency_gain:.2f})"
        )
    return ExportOutputs(digest, ctx.parity, variant)


def restore_export(ctx: RunContext, outputs: ExportOutputs) -> None:
    ctx.onnx_bytes = ctx.home.artifacts.get(outputs.onnx)
    ctx.parity = outputs.parity


# -- validation gates ----------------------------------------------------------------------------


class GatesOutputs(msgspec.Struct, frozen=True):
    report: GateReport
    evidence: GateEvidence  # what the gates judged


def run_gates(ctx: RunContext) -> GatesOutputs:
    assert ctx.schema is not None and ctx.eval_part is not None and ctx.x_eval is not None and ctx.y_eval is not None, (
        "made by features (or an outside model's evaluation)"
    )
    rules, task, metric = ctx.spec.validation, ctx.task, ctx.spec.metric
    unknown = [c for c in rules.segments if c not in ctx.eval_part.columns]
    if unknown:
        raise InvalidInput(
            f"validation.segments names {unknown}, which the training frame lacks; "
            "name feature columns such as 'country'"
        )
    output = onnx_model.predict(onnx_model.session(ctx.onnx_bytes, ["CPUExecutionProvider"]), ctx.x_eval, task)
    probes, failures = robustness_failures(ctx.onnx_bytes, ctx.schema, ctx.x_eval[0], task)
    production, difference, unscored = _production_score(ctx, output)
    latency = single_row_latency(ctx.onnx_bytes, ctx.x_eval, task=task, provider=ctx.spec.serving.provider)
    evidence = GateEvidence(
        task=task.kind,
        metric=metric,
        value=ctx.metrics[metric],
        recall_at_precision=ctx.metrics.get("recall_at_precision") if task.kind == "binary" else None,
        # what a model that learnt nothing scores on these rows: the training rows' class shares or mean
        baseline_value=baseline_score(task, metric, ctx.y_eval, reference=ctx.y_train),
        parity_diff=ctx.parity,  # for regression already relative to the values' scale (onnx_model.parity)
        p99_ms=latency.p99_ms,
        latency_provider=latency.provider,
        robustness_probes=probes,
        robustness_failures=failures,
        production_version=production,
        production_value=None if production is None else difference.production if difference else math.nan,
        segments={
            c: segment_scores(ctx.y_eval, output, ctx.eval_part[c].to_list(), task, metric) for c in rules.segments
        },
    )
    if production is not None and not (difference is not None and math.isfinite(difference.production)):
        # production could not score the rows: the gate says why, and judges against its recorded metric
        recorded = ctx.home.registry.version(ctx.spec.name, production).metrics.get(metric)
        evidence = msgspec.structs.replace(evidence, production_unscored=unscored, production_recorded=recorded)
    compared = (
        None
        if difference is None
        else SameRows(
            evaluation_label("this run's", ctx.eval_part[ctx.spec.features.event_time], ctx.eval_part.height),
            difference,
        )
    )
    ctx.gates = evaluate_gates(rules, evidence, compared)
    return GatesOutputs(ctx.gates, evidence)


def restore_gates(ctx: RunContext, outputs: GatesOutputs) -> None:
    ctx.gates = outputs.report


def _production_score(ctx: RunContext, output: np.ndarray) -> tuple[int | None, Difference | None, str]:
    """The production version, and this run's ONNX ``output`` against production's own ONNX model on the same
    rows, this run's evaluation rows; where production could not score them, None and why."""
    assert ctx.eval_part is not None and ctx.y_eval is not None, "made by features"
    version = ctx.home.registry.alias(ctx.spec.name, "production")
    if version is None:
        return None, None, ""
    try:
        schema = msgspec.convert(ctx.home.registry.version(ctx.spec.name, version).feature_schema, FeatureSchema)
        lacking = lacking_features(schema, ctx.eval_part)
        if lacking:  # the spec's features changed since production was trained: its model cannot take these rows
            why = f"it takes {', '.join(lacking)}, which this run's features no longer include"
        else:
            production = version_output(ctx.home, ctx.spec.name, version, ctx.eval_part, ctx.task)
            return version, paired_difference(ctx.task, ctx.spec.metric, ctx.y_eval, output, production), ""
    except Exception as e:  # an unreadable production model cannot score them: the gate says so (gates.py)
        why = f"{type(e).__name__}: {e}"
    ctx.say(f"could not score production v{version} on the evaluation rows: {why}")
    return version, None, why


# -- register ------------------------------------------------------------------------------------


class RegisterOutputs(msgspec.Struct, frozen=True):
    version: int
    status: str  # registered, or rejected by a gate


def run_register(ctx: RunContext) -> RegisterOutputs:
    assert ctx.x_eval is not None and ctx.eval_part is not None, "made by features"
    assert ctx.gates is not None, "judged by gates"
    # Monitoring compares live windows with the evaluation rows and their out-of-sample scores
    # (never training rows, whose in-sample scores make CBPE over-confident): store them once.
    output = onnx_model.predict(onnx_model.session(ctx.onnx_bytes, ["CPUExecutionProvider"]), ctx.x_eval, ctx.task)
    ctx.run.log_artifact(REFERENCE_ARTIFACT, reference_bytes(ctx.spec, ctx.eval_part, output, ctx.task))
    ctx.version = ctx.home.registry.register_version(
        ctx.spec.name,
        status="registered" if ctx.gates.passed else "rejected",
        artifact_sha256=ctx.home.artifacts.put(ctx.onnx_bytes),
        feature_schema=msgspec.to_builtins(ctx.schema),
        metrics=ctx.metrics,
        params=ctx.params,
        gate_report=msgspec.to_builtins(ctx.gates),
        data_version=data_version(ctx.snapshots),
        code_version=code_version(),
        run_id=ctx.run.id,
        actor=ctx.actor,
    )
    ctx.run.set_tags({"version": ctx.version.version, "version_status": ctx.version.status})
    return RegisterOutputs(ctx.version.version, ctx.version.status)


def restore_register(ctx: RunContext, outputs: RegisterOutputs) -> None:
    ctx.version = ctx.home.registry.version(ctx.spec.name, outputs.version)


Outputs = TypeVar("Outputs", bound=msgspec.Struct)


@dataclass(frozen=True)
class Stage(Generic[Outputs]):
    name: str
    outputs: type[Outputs]  # what run returns and restore takes; a resumed run converts the recorded JSON
    run: Callable[[RunContext], Outputs]
    restore: Callable[[RunContext, Outputs], None]


STAGES: list[Stage[Any]] = [
    Stage("ingest", IngestOutputs, run_ingest, restore_ingest),
    Stage("validate", ValidateOutputs, run_validate, restore_validate),
    Stage("features", FeaturesOutputs, run_features, restore_features),
    Stage("train", TrainOutputs, run_train, restore_train),
    Stage("evaluate", EvaluateOutputs, run_evaluate, restore_evaluate),
    Stage("export", ExportOutputs, run_export, restore_export),
    Stage("gates", GatesOutputs, run_gates, restore_gates),
    Stage("register", RegisterOutputs, run_register, restore_register),
]

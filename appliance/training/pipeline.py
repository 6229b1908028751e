"""The training pipeline: ingest → validate → features → train → evaluate → export → gates → register.

Every stage is recorded in metadata.db (status, start, end, error, and its outputs Struct as JSON); a failed
run resumes at the stage that failed, the stages before it restored from their recorded outputs. One run per
model at a time, held by an OS file lock. A retrain whose ingest finds nothing new to learn from ends there,
'skipped', and registers nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Literal, overload

import msgspec

from appliance import progress
from appliance.data.ingest import IngestReport
from appliance.errors import Conflict, TrainingStopped
from appliance.home import Home
from appliance.machine.gpus import GpuProbe
from appliance.machine.snapshot import MachineProbe
from appliance.machine.usage import RunUsage, UsageMeter
from appliance.registry import ModelVersion
from appliance.settings import load_settings
from appliance.spec import ModelSpec
from appliance.tracking import TrackedRun
from appliance.tracking.code_version import code_version
from appliance.tracking.run import fail_running
from appliance.training import runs, stop
from appliance.training.run_lock import model_lock
from appliance.training.stages import STAGES, RunContext, ingest_source, nothing_new
from appliance.validation.gates import GateReport

__all__ = ["STAGES", "NothingNew", "TrainingOutcome", "abandon_dead_runs", "ingest_source", "train"]


class TrainingOutcome(msgspec.Struct):
    run_id: str
    version: ModelVersion
    gates: GateReport
    ingest: IngestReport | None  # None when a resumed run reused its earlier ingest
    train_rows: int
    eval_rows: int
    cutoff: str
    seconds: float
    reused_stages: list[str] = []
    retrain: bool = False
    feedback_rows: int = 0  # a retrain's newly labelled predictions it ingested


class NothingNew(msgspec.Struct):
    """A retrain that found nothing new to learn from: its run ended after the ingest, 'skipped', registering
    nothing, because a version was trained on exactly these snapshots with the same spec and code."""

    run_id: str
    message: str  # what every caller shows: the version, its snapshots, the labels that came
    learnt_before: int  # that version
    learnt_before_status: str  # registered | rejected
    snapshots: list[str]
    ingest: IngestReport | None
    seconds: float
    feedback_rows: int = 0  # newly labelled predictions ingested (none, or there would be something new)


@overload
def train(
    home: Home,
    spec: ModelSpec,
    actor: str = ...,
    say: Callable[[str], None] = ...,
    *,
    resume: Literal[False] = ...,
    run_id: str | None = ...,
    retrain: Literal[False] = ...,
    new_run_id: str | None = ...,
    gpus: GpuProbe | None = ...,
) -> TrainingOutcome: ...
@overload
def train(
    home: Home,
    spec: ModelSpec,
    actor: str = ...,
    say: Callable[[str], None] = ...,
    *,
    resume: bool = ...,
    run_id: str | None = ...,
    retrain: bool = ...,
    new_run_id: str | None = ...,
    gpus: GpuProbe | None = ...,
) -> TrainingOutcome | NothingNew: ...
def train(
    home: Home,
    spec: ModelSpec,
    actor: str = "cli",
    say: Callable[[str], None] = lambda _: None,
    *,
    resume: bool = False,
    run_id: str | None = None,
    retrain: bool = False,
    new_run_id: str | None = None,
    gpus: GpuProbe | None = None,
) -> TrainingOutcome | NothingNew:
    """Run the pipeline for one model and register the result (rejected if a gate fails).

    A ``retrain`` also ingests the newly labelled predictions and holds out only the newest days; when that
    leaves its data, spec and code those of a version already trained, it registers nothing (``NothingNew``).
    With ``resume``, continue the given failed run (default: the model's latest) at its failed stage,
    as the kind of run it was. ``new_run_id`` names a new run in advance (the API answers with it).
    The machine is metered meanwhile (``gpus``: NVML's reader, pynvml by default) and the run records what
    it used: GPU utilization, memory peak and energy, CPU use and time, and its cost under a ``[cost]`` section.
    """
    started = time.perf_counter()
    cost = load_settings(home.root).cost  # a settings file in error stops the run before it starts
    new_id = new_run_id or uuid.uuid4().hex
    with model_lock(home.root, spec.name, run_id or new_id):
        abandon_dead_runs(home, spec.name, say)
        done: dict[str, msgspec.Struct] = {}
        if resume:
            previous = runs.resumable_run(home.conn, spec.name, run_id)
            run_id, retrain = previous.id, previous.kind == "retrain"
            done = _recorded_outputs(previous)
            runs.restart_run(home.conn, run_id)
            tracked = TrackedRun.reopen(home.tracking, home.artifacts, run_id)
            say(f"resuming run {run_id[:8]} (attempt {previous.attempts + 1})")
        else:
            run_id = new_id
            params = {**spec.training.params, "seed": spec.training.seed, "trainer": spec.training.trainer}
            kind = "retrain" if retrain else "train"
            tracked = TrackedRun.create(
                home.tracking, home.artifacts, model=spec.name, name=kind, kind="pipeline", run_id=run_id
            )
            runs.start_run(home.conn, run_id, spec.name, kind, params, code_version())
            tracked.log_params(params)
            tracked.set_tags({"actor": actor, "trainer": spec.training.trainer})
        ctx = RunContext(home=home, spec=spec, run=tracked, say=say, actor=actor, retrain=retrain)
        meter = UsageMeter(MachineProbe(gpus=gpus), cost)
        try:
            with progress.watching(tracked.show_progress), meter:  # how far it is, for the Runs tab
                learnt = _run_stages(ctx, done)
        finally:  # a failed attempt used the machine too
            _record_usage(tracked, meter.usage())
    if not learnt:
        assert ctx.learnt_before is not None, "the ingest found the version"
        return NothingNew(
            run_id=run_id,
            message=nothing_new(ctx),
            learnt_before=ctx.learnt_before.version,
            learnt_before_status=ctx.learnt_before.status,
            snapshots=[s.hash for s in ctx.snapshots],
            ingest=ctx.ingest,
            seconds=time.perf_counter() - started,
            feedback_rows=ctx.feedback_rows,
        )
    assert (
        ctx.version is not None
        and ctx.gates is not None
        and ctx.train_part is not None
        and ctx.eval_part is not None
        and ctx.cutoff is not None
    ), "every stage ran or was restored"
    return TrainingOutcome(
        run_id=run_id,
        version=ctx.version,
        gates=ctx.gates,
        ingest=ctx.ingest,
        train_rows=ctx.train_part.height,
        eval_rows=ctx.eval_part.height,
        cutoff=ctx.cutoff.isoformat(),
        seconds=time.perf_counter() - started,
        reused_stages=[s.name for s in STAGES if s.name in done],
        retrain=retrain,
        feedback_rows=ctx.feedback_rows,
    )


def abandon_dead_runs(home: Home, model: str, say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Mark the model's runs whose worker died as failed (resumable); only while holding its run lock."""
    dead = runs.abandon_runs(home.conn, model)
    for run_id in dead:
        fail_running(home.tracking, run_id, "the worker process died")
        say(f"run {run_id[:8]} had no live worker (killed or crashed): marked failed, resumable")
    return dead


def _recorded_outputs(run: runs.PipelineRun) -> dict[str, msgspec.Struct]:
    """The outputs of the run's succeeded stages, typed, for a resume to restore.

    Read before the run restarts: outputs that no longer convert (recorded by a version whose stages
    returned something else) leave the failed run as it was."""
    stages = {s.name: s for s in STAGES}
    done = {}
    for record in run.stages:
        if record.status != "succeeded" or record.stage not in stages:
            continue
        try:
            done[record.stage] = msgspec.convert(record.outputs, stages[record.stage].outputs)
        except msgspec.ValidationError as e:
            raise Conflict(
                f"run {run.id[:8]} of '{run.model}' cannot resume: the recorded outputs of its stage "
                f"{record.stage} do not fit this version ({e}); start a new one with "
                f"`appliance train {run.model}`"
            ) from e
    return done


def _run_stages(ctx: RunContext, done: dict[str, msgspec.Struct]) -> bool:
    """Run (or restore) each stage; False when a retrain's ingest found nothing new and the run was skipped."""
    conn, run_id = ctx.home.conn, ctx.run.id
    for position, stage in enumerate(STAGES):
        if stage.name in done:
            stage.restore(ctx, done[stage.name])
            ctx.say(f"{stage.name}: reused from the earlier attempt")
            continue
        runs.start_stage(conn, run_id, stage.name, position)
        try:
            try:
                stop.check(f"before stage {stage.name}")
                outputs = stage.run(ctx)
            except TrainingStopped as e:  # a trainer knows where it stopped, not the model: say how to go on
                raise TrainingStopped(
                    f"{e}; continue the run with `appliance train {ctx.spec.name} --resume`"
                ) from None
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            runs.finish_stage(conn, run_id, stage.name, status="failed", error=error)
            runs.finish_run(conn, run_id, status="failed", error=f"stage {stage.name}: {error}")
            ctx.run.finish("failed", f"stage {stage.name}: {error}")
            raise
        runs.finish_stage(conn, run_id, stage.name, status="succeeded", outputs=msgspec.to_builtins(outputs))
        if ctx.learnt_before is not None:
            _skip(ctx)
            return False
    runs.finish_run(
        conn,
        run_id,
        status="succeeded",
        metrics=ctx.metrics | {"onnx_parity": ctx.parity},
        snapshots=[s.hash for s in ctx.snapshots],
    )
    ctx.run.finish("succeeded")
    ctx.drop_checkpoints()
    return True


def _record_usage(run: TrackedRun, usage: RunUsage) -> None:
    """Record what the run (this attempt of it) used of the machine, after its end: metrics and tags."""
    metrics, tags = usage.figures()
    run.log_metrics(metrics)
    run.set_tags(tags)
    run.store.flush()


def _skip(ctx: RunContext) -> None:
    """End a retrain that has nothing new to learn from: neither a success (it trained nothing) nor a failure
    (nothing is wrong), so its own status, with the reason beside it."""
    assert ctx.learnt_before is not None, "found by the ingest"
    reason = nothing_new(ctx)
    runs.finish_run(
        ctx.home.conn, ctx.run.id, status="skipped", snapshots=[s.hash for s in ctx.snapshots], outcome=reason
    )
    ctx.run.set_tags({"outcome": reason, "learnt_before": ctx.learnt_before.version})
    ctx.run.finish("skipped")
    ctx.drop_checkpoints()

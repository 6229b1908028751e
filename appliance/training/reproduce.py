"""Reproduce a registered version: retrain from its recorded snapshots, params, seed and trainer."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import msgspec

from appliance.errors import InvalidInput
from appliance.home import Home
from appliance.spec import SearchSection
from appliance.tracking import TrackedRun
from appliance.tracking.code_version import code_version
from appliance.training import runs
from appliance.training.registration import outside_kind, outside_source
from appliance.training.stages import (
    RunContext,
    TrainOutputs,
    run_evaluate,
    run_export,
    run_features,
    run_train,
    snapshots_by_hash,
)


class MetricDiff(msgspec.Struct, frozen=True):
    name: str
    recorded: float
    reproduced: float
    difference: float


class Reproduction(msgspec.Struct, frozen=True):
    model: str
    version: int
    run_id: str  # the reproduction's own tracked run
    recorded_code: str
    current_code: str
    recorded_onnx: str
    reproduced_onnx: str
    metrics: list[MetricDiff]

    @property
    def identical(self) -> bool:
        """Same ONNX bytes, so every prediction and metric is the same."""
        return self.recorded_onnx == self.reproduced_onnx

    @property
    def max_difference(self) -> float:
        return max((abs(m.difference) for m in self.metrics if not math.isnan(m.difference)), default=0.0)


def reproduce(home: Home, model: str, version: int, say: Callable[[str], None] = lambda _: None) -> Reproduction:
    """Retrain a version without registering anything, and compare its metrics and ONNX bytes."""
    mv = home.registry.version(model, version)
    if outside_source(mv) is not None:
        raise InvalidInput(
            f"v{version} was registered from an outside {outside_kind(mv)} file; there is no recipe "
            f"to reproduce (its source: {outside_source(mv)}; retrain it where it was trained and "
            f"register it again with `appliance register {model}`)"
        )
    original = runs.pipeline_run(home.conn, mv.run_id)
    trained = next(
        (
            msgspec.convert(s.outputs, TrainOutputs)
            for s in original.stages
            if s.stage == "train" and s.status == "succeeded"
        ),
        None,
    )
    params = dict(mv.params)
    seed, trainer = int(params.pop("seed")), str(params.pop("trainer", "lightgbm"))
    if trainer == "lightgbm" and trained is not None:
        params["num_threads"] = trained.threads  # LightGBM's sums depend on the thread count
    spec = home.spec(model)
    spec = msgspec.structs.replace(
        spec,
        training=msgspec.structs.replace(
            spec.training, trainer=trainer, seed=seed, params=params, search=SearchSection(), quantize=False
        ),
    )
    current = code_version()
    if current != mv.code_version:
        say(f"code differs: v{version} was trained by {mv.code_version}, this is {current}")
    with TrackedRun.create(
        home.tracking, home.artifacts, model=model, name=f"reproduce v{version}", kind="reproduce"
    ) as tracked:
        tracked.set_tags({"reproduces": f"{model} v{version}", "source_run": mv.run_id})
        tracked.log_params({**params, "seed": seed, "trainer": trainer})
        ctx = RunContext(
            home=home, spec=spec, run=tracked, say=say, actor="reproduce", retrain=original.kind == "retrain"
        )  # the same held-out days as the original
        ctx.snapshots = snapshots_by_hash(home, model, original.data_snapshots)
        tracked.log_data(original.data_snapshots)
        try:
            for stage in (run_features, run_train, run_evaluate, run_export):
                stage(ctx)
        finally:
            ctx.drop_checkpoints()
    diffs = [
        MetricDiff(
            name,
            float(value),
            float(ctx.metrics.get(name, math.nan)),
            float(ctx.metrics.get(name, math.nan)) - float(value),
        )
        for name, value in sorted(mv.metrics.items())
    ]
    return Reproduction(
        model,
        version,
        tracked.id,
        mv.code_version,
        current,
        mv.artifact_sha256,
        hashlib.sha256(ctx.onnx_bytes).hexdigest(),
        diffs,
    )

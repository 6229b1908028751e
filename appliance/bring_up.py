"""The main job: make sure every model has a production version, training only what is needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from appliance.errors import ApplianceError, InvalidInput
from appliance.features.encoding import FeatureSchema
from appliance.features.online import materialize_model
from appliance.home import Home
from appliance.spec import ModelSpec, load_spec
from appliance.training.pipeline import ingest_source, train
from storage.errors import StorageError


def bring_up(home: Home, spec_paths: Sequence[Path] | None, say: Callable[[str], None]) -> None:
    """Register the specs, then for each model: reuse production, or train and promote if the gate passes;
    last, refresh the online store so requests need only the entity key and request-time values."""
    _register(home, spec_paths or (), say)
    _ensure_production(home, say)
    for summary in home.registry.models():
        for r in materialize_model(home, home.spec(summary.name)):  # a restart keeps what requests moved rows by
            kept = f"; {r.kept:,} keep the requests answered after their last ingested event" if r.kept else ""
            say(f"{summary.name}: materialized features of {r.rows:,} entities (newest event {r.as_of or '-'}{kept})")


def _register(home: Home, spec_paths: Sequence[Path], say: Callable[[str], None]) -> None:
    """Every spec is read and checked before any is registered, so a bad file (its error names it) or two
    files declaring one model leave the data directory as it was."""
    specs = [load_spec(path) for path in spec_paths]
    declared: dict[str, Path | None] = {}
    for spec in specs:
        if spec.name in declared and declared[spec.name] != spec.path:
            raise InvalidInput(
                f"model spec {spec.path} and model spec {declared[spec.name]} both declare model '{spec.name}'; "
                "give each model its own name, or pass only one of them"
            )
        declared[spec.name] = spec.path
    registered = {m.name: m.spec_path for m in home.registry.models()}
    for spec in specs:
        if home.add_model(spec, actor="up"):
            say(f"registered model '{spec.name}' from {spec.path}")
        elif registered[spec.name] != str(spec.path):  # audited as spec_moved; said, so it is no surprise
            say(f"model '{spec.name}' now reads its spec from {spec.path} (it read {registered[spec.name]})")


def _ensure_production(home: Home, say: Callable[[str], None]) -> None:
    for summary in home.registry.models():
        name = summary.name
        spec = home.spec(name)
        if summary.production is not None:
            try:
                report = ingest_source(home, spec)
            except (ApplianceError, StorageError) as e:
                # A source moved or a batch refused is no reason to stop serving what is in production, nor the
                # other models: one restart must not take the whole service down.
                say(
                    f"{name}: v{summary.production} keeps serving; nothing was retrained, as its [data] source "
                    f"could not be ingested: {e}"
                )
                continue
            _say_features_moved(home, spec, summary.production, say)
            if not report.new_snapshot:
                say(f"{name}: v{summary.production} in production, no new data — nothing to retrain")
                continue
            # train() calls `say` before it returns, while `name` is still this model's.
            outcome = train(home, spec, actor="up", say=lambda line: say(f"{name}: {line}"))  # noqa: B023
            if outcome.gates.passed:
                say(
                    f"{name}: new data → candidate v{outcome.version.version} passed its gates; "
                    f"promote it with `appliance promote {name} {outcome.version.version}`"
                )
            else:
                say(
                    f"{name}: new data → v{outcome.version.version} failed its gates, "
                    f"v{summary.production} keeps serving"
                )
            continue
        if summary.candidate is not None:
            home.registry.promote(name, summary.candidate, actor="up", reason="first production version")
            say(f"{name}: promoted candidate v{summary.candidate} to production")
            continue
        outcome = train(home, spec, actor="up", say=lambda line: say(f"{name}: {line}"))  # noqa: B023
        version = outcome.version.version
        for check in outcome.gates.checks:
            say(f"{name}: gate {check.name}: {check.verdict} — {check.detail}")
        if outcome.gates.passed:
            home.registry.promote(name, version, actor="up", reason="first production version")
            say(f"{name}: v{version} promoted to production")
        else:
            say(
                f"{name}: v{version} was rejected by its gates; nothing to serve for '{name}' — "
                "fix the data or the spec and run `appliance train " + name + "`"
            )


def _say_features_moved(home: Home, spec: ModelSpec, production: int, say: Callable[[str], None]) -> None:
    """One line when the spec's features are not those the production version takes: it keeps serving (and
    requiring) its own until a version trained on the spec's is promoted."""
    served = msgspec.convert(home.registry.version(spec.name, production).feature_schema, FeatureSchema).names
    named = [f.name for f in spec.model_features]
    if served == named:
        return
    gone, new = [n for n in served if n not in named], [n for n in named if n not in served]
    changes = [f"without {gone}" if gone else "", f"with {new}" if new else ""]
    how = ", ".join(c for c in changes if c) or "in another order"
    say(
        f"{spec.name}: the spec's features differ from those v{production} serves ({how}); v{production} keeps "
        f"taking its own until a version trained on the spec's is promoted (`appliance train {spec.name}`)"
    )

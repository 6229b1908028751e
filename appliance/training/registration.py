"""Bring your own model: register a model trained elsewhere — an ONNX file, or a LightGBM model
text file converted here — for a model whose spec is registered, through the pipeline's own gates.

The ONNX model must take what the appliance feeds and give what it reads: one float32 input named
``features`` of shape [rows, F] (the spec's model features in order, categories as their code in the
vocabulary) and, by the spec's task, an output ``probabilities`` of shape [rows, 2] (binary) or [rows, K]
(multiclass, the classes in the spec's order), or ``value`` of shape [rows, 1] (regression). It is scored on
evaluation rows (the held-out days of the ingested snapshots, or a file checked against the data contract) for its
metrics and its monitoring reference, and judged by the same gates; a failed gate registers it as rejected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import polars as pl

from appliance.data.contract import DataContract, check_batch
from appliance.data.declared import (
    check_spec_types,
    entity_key_type,
    model_contract,
    model_task,
)
from appliance.data.snapshots import data_version, list_snapshots, read_snapshots
from appliance.data.sources import read_source
from appliance.errors import InvalidInput, NotFound
from appliance.features.encoding import FeatureSchema
from appliance.features.training_set import eval_cutoff
from appliance.home import Home
from appliance.monitoring.reference import ARTIFACT as REFERENCE_ARTIFACT
from appliance.monitoring.reference import reference_bytes
from appliance.registry import ModelVersion
from appliance.scoring import onnx_model
from appliance.scoring.metrics import evaluate
from appliance.spec import ModelSpec
from appliance.task import BINARY, Task, metrics_line
from appliance.tracking import TrackedRun
from appliance.tracking.code_version import code_version
from appliance.training import onnx_export, runs
from appliance.training.stages import RunContext, run_gates, training_frame
from appliance.validation.gates import GateReport
from appliance.validation.probes import recall_at_precision

# LightGBM objectives whose predictions are what each task serves (probabilities, or the value itself: no
# log-link objectives such as poisson, whose raw scores the ONNX converter would have to exponentiate).
OBJECTIVES = {
    "binary": ("binary", "cross_entropy", "xentropy"),
    "multiclass": ("multiclass", "softmax"),
    "regression": (
        "regression",
        "regression_l1",
        "huber",
        "fair",
        "quantile",
        "mape",
        "l2",
        "l1",
        "mean_squared_error",
        "mse",
        "rmse",
        "mae",
    ),
}
OUTSIDE = "outside"  # the code version of a version trained elsewhere: no code of ours trained it
KINDS = {"onnx": "ONNX", "lightgbm": "LightGBM model"}


class Registration(msgspec.Struct, frozen=True):
    """What registering an outside model did: the version (registered or rejected) and its gates."""

    version: ModelVersion
    gates: GateReport
    source: str  # "onnx file <sha256>" or "lightgbm file <sha256>"
    run_id: str  # the tracked run (kind "register") holding its artifacts and reference
    eval_rows: int
    eval_from: str  # where the evaluation rows came from
    categories_from: str  # where the category vocabularies came from
    quarantined: int = 0  # --eval rows left out because they broke the data contract


def register_model(
    home: Home | Path | str,
    model: str,
    *,
    onnx: Path | str | None = None,
    lightgbm: Path | str | None = None,
    eval_data: Path | str | None = None,
    categories: Path | str | dict | None = None,
    reason: str = "",
    actor: str = "python",
    say: Callable[[str], None] = lambda _: None,
) -> Registration:
    """Register a model trained elsewhere (exactly one of ``onnx`` or ``lightgbm``) as the next version.

    ``eval_data``: a CSV/Parquet file of labelled events (default: the last ``eval_days`` days of the
    ingested snapshots). ``categories``: each category feature's vocabulary in code order (a JSON file
    or a dict); without it, the data contract's allowed values, sorted as training sorts them, else those of
    the ingested training days (see ``feature_schema``).
    """
    if (onnx is None) == (lightgbm is None):
        raise InvalidInput("give exactly one model: an ONNX file (--onnx) or a LightGBM model text file (--lightgbm)")
    if isinstance(home, Home):
        return _register(home, model, onnx, lightgbm, eval_data, categories, reason, actor, say)
    with Home(Path(home)) as opened:
        return _register(opened, model, onnx, lightgbm, eval_data, categories, reason, actor, say)


def register_onnx(home: Home | Path | str, model: str, onnx_path: Path | str, **options) -> Registration:
    """Register an ONNX file trained elsewhere; ``options`` as for ``register_model``."""
    return register_model(home, model, onnx=onnx_path, **options)


def register_lightgbm(home: Home | Path | str, model: str, model_path: Path | str, **options) -> Registration:
    """Register a LightGBM model text file (converted to ONNX here); ``options`` as for ``register_model``."""
    return register_model(home, model, lightgbm=model_path, **options)


def outside_source(mv: ModelVersion) -> str | None:
    """Where a version registered from outside came from ('onnx file <sha256>'); None for a trained one."""
    return str(mv.params.get("source", "a file")) if mv.code_version == OUTSIDE else None


def outside_kind(mv: ModelVersion) -> str:
    """'ONNX' or 'LightGBM model', for messages about an outside version."""
    return KINDS.get(str(mv.params.get("format")), "model")


def _register(
    home: Home,
    model: str,
    onnx: Path | str | None,
    lightgbm: Path | str | None,
    eval_data: Path | str | None,
    categories: Path | str | dict | None,
    reason: str,
    actor: str,
    say: Callable[[str], None],
) -> Registration:
    spec = home.spec(model)
    contract = model_contract(spec)
    check_spec_types(spec, contract)
    fmt, path = ("onnx", Path(onnx)) if onnx is not None else ("lightgbm", Path(lightgbm))
    raw = _read(path, KINDS[fmt])
    source = f"{fmt} file {hashlib.sha256(raw).hexdigest()}"
    names = [f.name for f in spec.model_features]
    task = model_task(spec, contract)
    booster = None
    if fmt == "lightgbm":
        booster, onnx_bytes = _lightgbm_to_onnx(raw, path, spec.name, names, task)
    else:
        onnx_bytes = raw
    sess = check_onnx_contract(onnx_bytes, spec.name, names, task)  # before anything slow: a mismatch is found at once
    evaluation = _evaluation_rows(home, spec, contract, eval_data)
    notes: list[str] = []  # about the vocabularies, said after the line naming where they came from
    schema, categories_from = feature_schema(
        spec,
        contract,
        evaluation.schema_rows,
        categories,
        lambda: evaluation.training_days or _training_days(home, spec),
        entity_key_type(spec, contract),
        notes.append,
    )
    x_eval = schema.encode_frame(evaluation.rows)
    y_eval = task.labels(evaluation.rows[spec.target.column])
    y_before = None if evaluation.training_labels is None else task.labels(evaluation.training_labels)
    output = model_output(sess, x_eval, task)
    parity = None
    if booster is not None:
        from appliance.training.lightgbm_trainer import native_predict

        parity = onnx_model.parity(sess, native_predict(booster, x_eval), x_eval, task)
    metrics = evaluate(task, y_eval, output)
    if task.kind == "binary":
        metrics["recall_at_precision"] = recall_at_precision(y_eval, output, spec.validation.recall_at_precision)
    say(
        f"{KINDS[fmt]} file {path.name} ({source.split()[-1][:12]}) takes the {len(schema.columns)} features of "
        f"'{spec.name}'; category vocabularies {categories_from}"
    )
    for note in notes:
        say(note)
    say(f"evaluated on {evaluation.rows.height:,} rows ({evaluation.eval_from}): {metrics_line(task.kind, metrics)}")

    params = {
        "source": source,
        "format": fmt,
        "file": str(path.resolve()),
        "eval": evaluation.eval_from,
        "categories": categories_from,
        "registered_by": code_version(),
    }
    with TrackedRun.create(
        home.tracking, home.artifacts, model=spec.name, name=f"register {fmt}", kind="register"
    ) as tracked:
        tracked.log_params(params)
        tracked.set_tags({"actor": actor, "source": source, **({"reason": reason} if reason else {})})
        if evaluation.snapshots:
            tracked.log_data(evaluation.snapshots)
        tracked.log_artifact("model.onnx", onnx_bytes)
        if booster is not None:
            tracked.log_artifact("model.native", raw)
        tracked.log_metrics({f"eval_{k}": v for k, v in metrics.items()}, step=0)
        if parity is not None:
            tracked.log_metric("onnx_parity", parity, step=0)
        ctx = RunContext(
            home=home,
            spec=spec,
            run=tracked,
            say=say,
            actor=actor,
            eval_part=evaluation.rows,
            schema=schema,
            task=task,
            y_train=y_before,
            x_eval=x_eval,
            y_eval=y_eval,
            metrics=metrics,
            onnx_bytes=onnx_bytes,
            parity=parity,
        )
        run_gates(ctx)
        # Monitoring compares live windows with these rows and their scores, as for a trained version.
        tracked.log_artifact(REFERENCE_ARTIFACT, reference_bytes(spec, evaluation.rows, output, task))
        # A version names its run in metadata.db: one of kind "register", recorded only now (a training run
        # starting meanwhile would take a running one for dead), with no snapshots (nothing was trained on them).
        runs.start_run(home.conn, tracked.id, spec.name, "register", params, code_version())
        runs.start_stage(home.conn, tracked.id, "register", 0)
        try:
            version = home.registry.register_version(
                spec.name,
                status="registered" if ctx.gates.passed else "rejected",
                artifact_sha256=home.artifacts.put(onnx_bytes),
                feature_schema=msgspec.to_builtins(schema),
                metrics=metrics,
                params=params,
                gate_report=msgspec.to_builtins(ctx.gates),
                data_version=evaluation.data_version,
                code_version=OUTSIDE,
                run_id=tracked.id,
                actor=actor,
                audit_detail={"source": source, "file": str(path.resolve()), "reason": reason},
            )
        except BaseException as e:
            runs.finish_stage(home.conn, tracked.id, "register", status="failed", error=f"{type(e).__name__}: {e}")
            runs.finish_run(home.conn, tracked.id, status="failed", error=f"stage register: {type(e).__name__}: {e}")
            raise
        runs.finish_stage(
            home.conn,
            tracked.id,
            "register",
            status="succeeded",
            outputs={
                "version": version.version,
                "status": version.status,
                "source": source,
                "eval_rows": len(x_eval),
                "report": msgspec.to_builtins(ctx.gates),
            },
        )
        runs.finish_run(
            home.conn,
            tracked.id,
            status="succeeded",
            metrics=metrics | ({} if parity is None else {"onnx_parity": parity}),
        )
        tracked.set_tags({"version": version.version, "version_status": version.status})
    return Registration(
        version,
        ctx.gates,
        source,
        tracked.id,
        evaluation.rows.height,
        evaluation.eval_from,
        categories_from,
        evaluation.quarantined,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} file {path} does not exist") from None
    except OSError as e:
        raise InvalidInput(f"{what} file {path} could not be read ({e.strerror or e})") from None


# -- evaluation rows -----------------------------------------------------------------------------


@dataclass
class _Evaluation:
    rows: pl.DataFrame  # labelled events with the spec's features (the training frame's shape)
    eval_from: str
    schema_rows: pl.DataFrame  # whether a request may come without its entity is learnt from them
    data_version: str
    snapshots: list[str] = field(default_factory=list)
    quarantined: int = 0
    # the ingested days a trained version learns its category vocabularies from, and their name (None: not
    # read yet, with --eval; the vocabularies may not need them)
    training_days: tuple[pl.DataFrame, str] | None = None
    # the labels of the ingested days before the evaluation days: the know-nothing baseline answers their
    # class shares or mean, as it does for a trained version (None: it answers the evaluation rows' own)
    training_labels: pl.Series | None = None


def _evaluation_rows(home: Home, spec: ModelSpec, contract: DataContract, eval_data: Path | str | None) -> _Evaluation:
    """The rows that score the model: a contract-checked file, or the held-out days the pipeline uses."""
    target = spec.target.column
    if eval_data is not None:
        path = Path(eval_data)
        checked = check_batch(contract, read_source(path))
        if checked.accepted.height == 0:
            raise InvalidInput(
                f"every one of the {checked.rows_read:,} rows in {path} broke the data contract of "
                f"'{spec.name}' (first reason: {checked.quarantined['reason'][0]})"
            )
        # Windowed aggregations of these rows see only the history this file holds.
        rows = training_frame(spec, checked.accepted)
        digest, _ = home.offline.write(f"{spec.name}/evaluation_sets", checked.accepted)
        where = f"{path.name}, {checked.quarantined.height:,} rows left out by the contract"
        evaluation = _Evaluation(rows, where, rows, digest, quarantined=checked.quarantined.height)
    else:
        snapshots = list_snapshots(home.conn, spec.name)
        if not snapshots:
            raise NotFound(
                f"model '{spec.name}' has no ingested data to evaluate on; ingest it with "
                f"`appliance ingest {spec.name} PATH`, or pass --eval DATA"
            )
        frame = training_frame(spec, read_snapshots(home.offline, snapshots))
        if frame.height == 0:
            raise InvalidInput(f"the ingested snapshots of '{spec.name}' hold no labelled rows; pass --eval DATA")
        # The pipeline's hold-out: the last eval_days whole days; the days before train.
        event_time, days = spec.features.event_time, spec.training.eval_days
        cutoff = eval_cutoff(spec, frame)
        rows, before = frame.filter(pl.col(event_time) >= cutoff), frame.filter(pl.col(event_time) < cutoff)
        vocabulary = (before, "the ingested training days") if before.height else (rows, "the evaluation days")
        evaluation = _Evaluation(
            rows,
            f"the last {days} days of the ingested snapshots, from {cutoff:%Y-%m-%d}",
            vocabulary[0],
            data_version(snapshots),
            [s.hash for s in snapshots],
            training_days=vocabulary,
            training_labels=before[target] if before.height else None,
        )
    if evaluation.rows[target].n_unique() < 2:
        need = "more than one value" if spec.target.task == "regression" else "at least two classes"
        raise InvalidInput(
            f"the evaluation rows ({evaluation.eval_from}) hold {evaluation.rows.height:,} labelled "
            f"rows and need {need} of '{target}'; pass --eval DATA with them, or ingest more days"
        )
    return evaluation


def _training_days(home: Home, spec: ModelSpec) -> tuple[pl.DataFrame, str] | None:
    """The ingested days a trained version would learn its vocabularies from: those before the held-out
    days (all of them when none are before), with their name; None when no labelled rows are ingested."""
    snapshots = list_snapshots(home.conn, spec.name)
    if not snapshots:
        return None
    frame = training_frame(spec, read_snapshots(home.offline, snapshots))
    if frame.height == 0:
        return None
    before = frame.filter(pl.col(spec.features.event_time) < eval_cutoff(spec, frame))
    return (before, "the ingested training days") if before.height else (frame, "the ingested days")


# -- the feature schema --------------------------------------------------------------------------


def feature_schema(
    spec: ModelSpec,
    contract: DataContract,
    rows: pl.DataFrame,
    categories: Path | str | dict | None,
    training_days: Callable[[], tuple[pl.DataFrame, str] | None],
    key_type: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[FeatureSchema, str]:
    """The version's inputs in the spec's order (``rows``: whether a request may lack its entity); each
    category feature's vocabulary, in code order, from ``categories``, else the data contract's
    allowed_values, else the ``training_days`` a trained version learns it from — never from the rows the
    model is scored on, which may lack a value and so shift every code after it. Returns the schema and
    where its vocabularies came from."""
    schema = FeatureSchema.learn(spec.model_features, rows, spec.features, key_type)
    names = [c.name for c in schema.columns if c.type == "category"]
    if not names:
        return schema, "not needed (no category features)"
    rules = {rule.name: rule for rule in contract.fields}
    # Sorted as text, as FeatureSchema.learn sorts a column's values: a model encoded the appliance's way
    # has these codes whenever its training rows held every value the contract allows.
    allowed = {
        name: sorted({str(v) for v in rules[name].allowed_values or []})
        for name in names
        if name in rules and rules[name].allowed_values is not None
    }
    if categories is None:
        vocabularies, where = _default_vocabularies(spec, names, allowed, training_days)
    else:
        vocabularies, where = _given_vocabularies(spec, names, allowed, categories, say)
    columns = [
        msgspec.structs.replace(c, categories=vocabularies[c.name]) if c.type == "category" else c
        for c in schema.columns
    ]
    return msgspec.structs.replace(schema, columns=columns), where


def _default_vocabularies(
    spec: ModelSpec,
    names: list[str],
    allowed: dict[str, list[str]],
    training_days: Callable[[], tuple[pl.DataFrame, str] | None],
) -> tuple[dict[str, list[str]], str]:
    """Without --categories: the contract's allowed values, sorted; a feature the contract lists none for
    (an entity attribute, an open text field) learns them from the ingested training days."""
    vocabularies = {name: allowed[name] for name in names if name in allowed}
    unlisted = [name for name in names if name not in allowed]
    if not unlisted:
        return vocabularies, "from the data contract's allowed_values (sorted; code = position)"
    days = training_days()
    if days is None:
        raise InvalidInput(
            f"no category codes for {unlisted}: the data contract lists no allowed_values for them and "
            f"'{spec.name}' has no ingested data to learn them from; pass --categories FILE.json with each "
            "category feature's values in the model's code order"
        )
    frame, days_from = days
    learnt = FeatureSchema.learn(spec.model_features, frame, spec.features)
    vocabularies |= {c.name: c.categories or [] for c in learnt.columns if c.name in unlisted}
    if not allowed:
        return vocabularies, f"learnt from {days_from} (distinct values, sorted; code = position)"
    listed = [name for name in names if name in allowed]
    return vocabularies, (
        f"from the data contract's allowed_values for {listed} and learnt from {days_from} for "
        f"{unlisted} (sorted; code = position)"
    )


def _given_vocabularies(
    spec: ModelSpec,
    names: list[str],
    allowed: dict[str, list[str]],
    categories: Path | str | dict,
    say: Callable[[str], None],
) -> tuple[dict[str, list[str]], str]:
    """The vocabularies a user gave, each checked against the values the contract allows: one without a
    code for an allowed value would score it as missing, and is refused."""
    given, where = _categories_file(categories)
    unknown = sorted(set(given) - set(names))
    missing = [n for n in names if n not in given]
    if unknown or missing:
        raise InvalidInput(
            f"categories {where}: "
            + "; ".join(
                ([f"{unknown} are not category features of '{spec.name}'"] if unknown else [])
                + ([f"no vocabulary for {missing}"] if missing else [])
            )
            + f" — give a list of values, in code order, for each of {names}"
        )
    vocabularies = {}
    for name in names:
        values = given[name]
        # Integer categories are kept as their digits, as FeatureSchema.learn keeps them.
        texts = (
            [v if isinstance(v, str) else str(v) for v in values if isinstance(v, str) or type(v) is int]
            if isinstance(values, list)
            else []
        )
        if not isinstance(values, list) or len(texts) != len(values) or len(set(texts)) != len(texts):
            raise InvalidInput(
                f"categories {where}: '{name}' must be a list of distinct values (strings or "
                "integers) in code order: the code of a value is its position"
            )
        vocabularies[name] = texts
    uncoded = {n: [v for v in allowed[n] if v not in vocabularies[n]] for n in names if n in allowed}
    if any(uncoded.values()):
        raise InvalidInput(
            f"categories {where}: "
            + "; ".join(f"'{n}' has no code for {values}" for n, values in uncoded.items() if values)
            + ", which the data contract allows (they would be scored as missing); add each at the code "
            "the model was trained with"
        )
    # A value the contract does not allow never reaches the evaluation rows (ingest quarantines its rows),
    # but a request may still carry it: its code is kept, and said.
    beyond = {n: [v for v in vocabularies[n] if v not in allowed[n]] for n in names if n in allowed}
    if any(beyond.values()):
        say(
            f"categories {where}: "
            + "; ".join(f"'{n}' codes {values}" for n, values in beyond.items() if values)
            + ", which the data contract does not allow (ingest quarantines rows with them); kept as given"
        )
    return vocabularies, f"from {where}"


def _categories_file(categories: Path | str | dict) -> tuple[dict, str]:
    if isinstance(categories, dict):
        return categories, "the categories passed in"
    path = Path(categories)
    try:
        given = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"categories file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"categories file {path} is not valid JSON ({e})") from None
    if not isinstance(given, dict):
        raise InvalidInput(
            f"categories file {path} must hold a JSON object: each category feature → its values "
            'in code order, e.g. {"color": ["red", "green"]}'
        )
    return given, path.name


# -- the model -----------------------------------------------------------------------------------


def _contract_words(names: list[str]) -> str:
    return f"one float32 matrix '{onnx_model.INPUT_NAME}' of shape [rows, {len(names)}] ({', '.join(names)})"


def check_onnx_contract(onnx_bytes: bytes, model: str, names: list[str], task: Task = BINARY):
    """An ONNX Runtime session for a model that takes what serving feeds and gives what it reads;
    any mismatch is an InvalidInput naming it."""
    try:
        sess = onnx_model.session(onnx_bytes, ["CPUExecutionProvider"])
    except Exception as e:  # ONNX Runtime raises its own types for unparsable or unsupported graphs
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InvalidInput(f"the file is not an ONNX model ONNX Runtime can load ({first[:200]})") from None
    width, feeds = len(names), _contract_words(names)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise InvalidInput(
            f"the ONNX model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
            f"the appliance feeds '{model}' models {feeds}"
        )
    given = inputs[0]
    if given.name != onnx_model.INPUT_NAME:
        raise InvalidInput(
            f"the ONNX input is named '{given.name}', not '{onnx_model.INPUT_NAME}': the appliance "
            f"feeds {feeds}; name it so when converting, e.g. initial_types=[('features', "
            f"FloatTensorType([None, {width}]))]"
        )
    if given.type != "tensor(float)":
        raise InvalidInput(
            f"the ONNX input '{given.name}' is {given.type}, not tensor(float): the appliance feeds {feeds}"
        )
    shape = list(given.shape or [])
    if len(shape) != 2:
        raise InvalidInput(f"the ONNX input '{given.name}' has shape {shape}: the appliance feeds {feeds}")
    if isinstance(shape[1], int) and shape[1] != width:
        raise InvalidInput(
            f"the ONNX input '{given.name}' is {shape[1]} features wide, but '{model}' has {width} "
            f"features: {', '.join(names)} (in the spec's order)"
        )
    if isinstance(shape[0], int):
        raise InvalidInput(
            f"the ONNX input '{given.name}' takes exactly {shape[0]} row(s); serving scores batches: "
            "export it with a dynamic first dimension (None)"
        )
    outputs = {o.name: o for o in sess.get_outputs()}
    if task.kind == "regression":
        _check_value_output(outputs)
    else:
        _check_probabilities_output(outputs, len(task.classes), task)
    return sess


def _check_value_output(outputs: dict) -> None:
    out = outputs.get(onnx_model.VALUE)
    if out is None:
        raise InvalidInput(
            f"the ONNX model has no output '{onnx_model.VALUE}' (it has {', '.join(outputs)}): the "
            "appliance reads each row's predicted value, [rows, 1], from an output of that name"
        )
    shape = list(out.shape or [])
    if (
        out.type not in ("tensor(float)", "tensor(double)")
        or len(shape) not in (1, 2)
        or (len(shape) == 2 and isinstance(shape[1], int) and shape[1] != 1)
    ):
        raise InvalidInput(
            f"the ONNX output '{out.name}' is {out.type} of shape {shape}: the appliance reads a float "
            "tensor [rows, 1], one value per row"
        )


def _check_probabilities_output(outputs: dict, k: int, task: Task) -> None:
    out = outputs.get(onnx_model.PROBABILITIES)
    names = "class 0 and class 1" if task.kind == "binary" else f"each of the {k} classes {list(task.classes)}"
    if out is None:
        raise InvalidInput(
            f"the ONNX model has no output '{onnx_model.PROBABILITIES}' (it has "
            f"{', '.join(outputs)}): the appliance reads each row's probabilities of {names}, "
            f"[rows, {k}], from an output of that name"
        )
    if out.type.startswith("seq("):
        raise InvalidInput(
            f"the ONNX output '{out.name}' is {out.type} (a ZipMap), not a [rows, {k}] float tensor; "
            "convert with zipmap=False"
        )
    shape = list(out.shape or [])
    if out.type != "tensor(float)" or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != k):
        raise InvalidInput(
            f"the ONNX output '{out.name}' is {out.type} of shape {shape}, not a "
            f"probability per class: the appliance reads a float tensor [rows, {k}] ({names})"
        )


def model_output(sess, x: np.ndarray, task: Task) -> np.ndarray:
    """The task's output for each row (``appliance.task``); one that is not a probability per class, or not a
    finite value, is an InvalidInput."""
    try:
        out = np.asarray(
            sess.run(
                [onnx_model.VALUE if task.kind == "regression" else onnx_model.PROBABILITIES],
                {onnx_model.INPUT_NAME: x},
            )[0]
        )
    except Exception as e:  # a graph that loads but cannot run on the spec's matrix
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InvalidInput(f"ONNX Runtime could not score the evaluation rows ({first[:200]})") from None
    if task.kind == "regression":
        values = out.reshape(-1).astype(np.float64)
        if values.shape != (len(x),) or not np.isfinite(values).all():
            raise InvalidInput(
                f"the ONNX output '{onnx_model.VALUE}' is not one finite value per row: for {len(x)} "
                f"rows it has shape {list(out.shape)}"
                + ("" if np.isfinite(values).all() else ", with NaN or infinite values")
            )
        return values
    k, name = len(task.classes), onnx_model.PROBABILITIES
    if out.shape != (len(x), k):
        raise InvalidInput(
            f"the ONNX output '{name}' has shape {list(out.shape)} for {len(x)} rows, not "
            f"[{len(x)}, {k}]: it is not a probability per class"
        )
    if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1:
        raise InvalidInput(
            f"the ONNX output '{name}' is not a probability: on the evaluation "
            f"rows it ranges from {np.nanmin(out):.4g} to {np.nanmax(out):.4g}"
            + ("" if np.isfinite(out).all() else ", with NaN or infinite values")
            + " (a raw score? apply the sigmoid or softmax in the model)"
        )
    off = float(np.max(np.abs(out.sum(axis=1) - 1)))
    if off > 1e-3:
        raise InvalidInput(
            f"the ONNX output '{name}' is not a probability per class: a row's "
            f"{k} values should sum to 1, and are off by up to {off:.3g}"
        )
    return (out[:, 1] if task.kind == "binary" else out).astype(np.float64)


def _lightgbm_to_onnx(raw: bytes, path: Path, model: str, names: list[str], task: Task):
    """(the booster, its ONNX bytes), converted the way the pipeline's export converts its own."""
    import lightgbm as lgb

    from appliance.training.lightgbm_trainer import float32_thresholds, positional_names

    try:
        text = raw.decode()
        booster = lgb.Booster(model_str=text)
    except (UnicodeDecodeError, lgb.basic.LightGBMError) as e:
        raise InvalidInput(
            f"{path} is not a LightGBM model text file ({str(e).strip()[:200]}); save the model "
            "with booster.save_model(PATH)"
        ) from None
    objective = next((line.split("=", 1)[1] for line in text.splitlines() if line.startswith("objective=")), "")
    name = objective.split(" ")[0]
    if name not in OBJECTIVES[task.kind]:
        wanted = " or ".join(repr(o) for o in OBJECTIVES[task.kind][:2])
        raise InvalidInput(
            f"the LightGBM model's objective is '{objective or 'unknown'}', but '{model}' is a "
            f"{task.kind} model: train with objective {wanted}"
        )
    if task.kind == "multiclass" and booster.num_model_per_iteration() != len(task.classes):
        raise InvalidInput(
            f"the LightGBM model has {booster.num_model_per_iteration()} classes, but '{model}' "
            f"declares {len(task.classes)}: {list(task.classes)} (num_class, in that order)"
        )
    width = len(names)
    if booster.num_feature() != width:
        raise InvalidInput(
            f"the LightGBM model takes {booster.num_feature()} features, but '{model}' has {width}: "
            f"{', '.join(names)} (in the spec's order)"
        )
    named = booster.feature_name()
    if named != positional_names(width) and named != names:
        raise InvalidInput(
            f"the LightGBM model's features are {named}; '{model}' feeds {names} in this order — "
            "train on the columns in the spec's order"
        )
    # Thresholds rounded down to float32 decide every float32 input as the float64 ones do, so the ONNX
    # tree ensemble (which compares in float32) is the same model, and parity measures only summation.
    return booster, onnx_export.lightgbm_to_onnx(float32_thresholds(booster))

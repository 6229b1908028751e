"""The monitor job: the production version's logged traffic, in event-time windows, against its
reference (the version's held-out evaluation rows with their out-of-sample outputs and labels).

Every check reads the model's output in the reference's columns (``monitoring.reference``), whatever the
task: ``logged_traffic`` builds them from the log once (a multiclass row's probabilities, a regression
row's value), and the feedback as the task reads it (binary 0/1, a class index, a value).

Incremental by window: each window's fingerprint (rows and newest arrival; labels and newest
label) is kept in monitoring.db. A window whose rows changed is recomputed in full; one whose
only change is newly arrived labels gets its performance recomputed; an unchanged window costs
nothing. A window recomputed in full also records each input's distribution beside the reference's,
in bins a chart can name (``monitoring.distributions``), written with its results. Machine and
pipeline health, and the prediction-log rows the server could not log, are read once per run,
stamped with the run's time.

Bounded whatever the log holds: the fingerprints are counted in SQL per event-time hour; a run builds
windows only within the spec's event-time horizon around the clock (``[data] event_time_past`` and
``event_time_future``), at most ``[monitoring] max_windows`` of the newest holding traffic; and it reads
the rows of the windows it recomputes a few windows at a time (``ROWS_PER_READ``), only the columns and
the request's declared fields it checks. The log's other fields are never decoded.

Monitoring judges no alert rules: alerting reads monitoring's results, so it sits above it, and the monitor
job (``appliance.scheduler.jobs``) calls this module and then the alert engine with the rows it wrote.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec
import numpy as np
import polars as pl

from appliance.data.contract import (
    FieldRule,
    key_text_column,
    load_contract,
    parse_times,
)
from appliance.data.declared import model_task
from appliance.data.sources import read_source
from appliance.errors import NotReady
from appliance.home import Home
from appliance.machine.snapshot import MachineProbe, MachineSnapshot
from appliance.monitoring.distributions import fit_bins, window_distributions
from appliance.monitoring.estimation import estimate_performance, reconstruction_drift
from appliance.monitoring.feature_drift import ReferenceProfile, feature_drift
from appliance.monitoring.performance import task_performance_by_window
from appliance.monitoring.prediction_drift import task_prediction_drift_by_window
from appliance.monitoring.quality import category_rules, data_quality, expected_rows
from appliance.monitoring.reference import (
    SCORE,
    load_reference,
    proba_columns,
    reference_metrics,
    whole_windows,
    with_task_labels,
)
from appliance.monitoring.store import (
    RESULT_SCHEMA,
    finished_pipeline_statuses,
    iso,
    last_computed,
    open_monitoring,
    record_windows,
    window_states,
    write_results,
)
from appliance.monitoring.windows import EventWindows, checks
from appliance.spec import Feature, ModelSpec
from appliance.spec.monitoring import MonitoringSection
from appliance.task import BINARY, Task, higher_is_better
from storage.prediction_log import PredictionStore

log = logging.getLogger(__name__)

LABEL = "_label"
RECEIVED, LABEL_AT, LATENCY, STATUS, REQUEST = "_received_at", "_label_at", "_latency_ms", "_status", "_request_id"
PREDICTED_LABEL, VALUE, PROBABILITIES = "_predicted_label", "_value", "_probabilities"  # see storage.prediction_log
SERVING_METHODS = ("requests", "throughput_rps", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
# About how many logged rows a run holds at once: the windows it recomputes are read in groups of consecutive
# windows up to this many rows (a larger window is read alone). A run's peak memory follows it, not the log's
# size (scripts/bench/monitor_memory.py).
ROWS_PER_READ = 250_000
# The log's columns as a frame's, in the order PredictionStore.logged_rows gives them.
_LOGGED_SCHEMA = {
    REQUEST: pl.String,
    "_position": pl.Int64,
    RECEIVED: pl.Float64,
    "_event_us": pl.Int64,
    "_entity": pl.String,
    "_features": pl.String,
    SCORE: pl.Float64,
    LATENCY: pl.Float64,
    STATUS: pl.Int64,
    LABEL: pl.Float64,
    LABEL_AT: pl.Float64,
    PREDICTED_LABEL: pl.Int64,
    VALUE: pl.Float64,
    PROBABILITIES: pl.String,
}


class MonitorReport(msgspec.Struct, frozen=True):
    model: str
    version: int
    windows: int  # windows holding traffic
    recomputed: int  # windows recomputed in full (their rows changed)
    relabelled: int  # windows whose performance was recomputed for new labels only
    rows: int  # result rows written by this run
    alerts: int  # of them, how many alert
    failed: list[str] = []  # window groups whose checks failed, with the error: left out, retried next run


class MonitorRun(NamedTuple):
    report: MonitorReport
    results: pl.DataFrame  # the result rows the run wrote (RESULT_SCHEMA): what the alert rules judge


def monitor(home: Home, model: str, probe: MachineProbe | None = None) -> MonitorReport:
    """Compute what changed since the last run and store it. A library call: it judges no alert rules,
    which the monitor job does (``appliance.scheduler.jobs.run_job(root, "monitor", model)``)."""
    return monitor_run(home, model, probe).report


def monitor_run(home: Home, model: str, probe: MachineProbe | None = None) -> MonitorRun:
    """``monitor``, returning the result rows it wrote as well as its report."""
    spec = home.spec(model)
    rules = spec.monitoring
    version = home.registry.alias(model, "production")
    if version is None:
        raise NotReady(f"'{model}' has no production version to monitor; promote one first")
    computed_at = time.time()
    conn = open_monitoring(home.root)
    try:
        state = logged_windows(home, spec, version, computed_at)
        before = window_states(conn, model, version)
        keys = state.select(pl.col("window_start").map_elements(iso, return_dtype=pl.String).alias("key"))["key"]
        changed, relabelled = [], []
        for key, row in zip(keys, state.iter_rows(named=True)):
            old = before.get(key)
            if old is None or tuple(old[:2]) != (row["rows"], row["last_received_at"]):
                changed.append(row["window_start"])
            elif tuple(old[2:]) != (row["labels"], row["last_label_at"]):
                relabelled.append(row["window_start"])
        parts, shares, failed = [], [], []
        unmeasured: set[datetime] = set()
        if changed or relabelled:
            reference = load_reference(home, model, version)
            profiled = whole_windows(reference, spec.features.event_time, rules.window)  # what windows compare to
            bins = fit_bins(profiled, monitored_features(spec, profiled)) if changed else []
            every = rules.window
            for starts, full in ((changed, True), (relabelled, False)):
                for group in _read_groups(state, starts, every):
                    since, until = group[0], group[-1] + _window_length(every)
                    try:
                        frame = logged_traffic(home, spec, version, since, until)
                        if frame.height == 0:  # retention moved the rows away since they were counted
                            continue
                        windows = EventWindows(frame, spec.features.event_time, every, since, until)
                        checks = _window_checks(spec, reference, frame, windows, group, full)
                        # the inputs' distributions change only with the rows
                        distributions = window_distributions(bins, frame, windows, group) if full else None
                    except Exception as e:
                        # One group of windows whose checks fail (a library's bug, data it cannot take) must not
                        # leave every other window, and the machine and pipeline, unmeasured: these are left out,
                        # not recorded as done (the next run tries them again), and the run says so.
                        log.exception("monitoring %s: the checks of the windows from %s failed", model, since)
                        failed.append(f"the windows {iso(since)}..{iso(until)}: {type(e).__name__}: {e}")
                        unmeasured.update(group)
                        continue
                    parts.append(checks)
                    if distributions is not None:
                        shares.append(distributions)
        parts.append(_snapshot_checks("machine", machine_checks(probe)))
        parts.append(_snapshot_checks("pipeline", pipeline_checks(home, model)))
        parts.append(_snapshot_checks("serving", log_overflow_checks(home, model, conn, computed_at)))
        now = datetime.fromtimestamp(computed_at, UTC)
        stamp = {"model": pl.lit(model), "version": pl.lit(version, pl.Int64), "computed_at": pl.lit(computed_at)}
        new = (
            pl.concat(
                [
                    p.with_columns(
                        window_end=pl.col("window_end").fill_null(now),
                        window_start=pl.col("window_start").fill_null(now),
                    )
                    for p in parts
                ]
            )
            .with_columns(**stamp)
            .select(list(RESULT_SCHEMA))
        )
        write_results(conn, new, pl.concat(shares).with_columns(**stamp) if shares else None)
        done = state.filter(pl.col("window_start").is_in([w for w in [*changed, *relabelled] if w not in unmeasured]))
        record_windows(conn, model, version, done, computed_at)
    finally:
        conn.close()
    return MonitorRun(
        MonitorReport(
            model, version, state.height, len(changed), len(relabelled), new.height, int(new["alert"].sum()), failed
        ),
        new,
    )


def logged_windows(home: Home, spec: ModelSpec, version: int, now: float) -> pl.DataFrame:
    """Per event-time window holding logged rows of the version, each window's fingerprint: window_start,
    rows, last_received_at, labels (rows with feedback) and last_label_at. Only whole windows within the
    spec's event-time horizon around ``now`` count, at most ``[monitoring] max_windows`` of the newest: a row
    dated year 1 or 9999 (logged before the horizon was enforced) builds no window series to it."""
    every, horizon = spec.monitoring.window, spec.data.horizon
    earliest, latest = horizon.bounds(now)
    since = _window_start(datetime.fromtimestamp(max(earliest, 0.0), UTC), every)
    until = _window_start(datetime.fromtimestamp(latest, UTC), every) + _window_length(every)
    store = PredictionStore(home.layout.predictions_db)
    try:
        hours = store.logged_hours(spec.name, version, _micros(since), _micros(until))
    finally:
        store.close()
    counted = pl.DataFrame(
        hours,
        schema={
            "hour": pl.Int64,
            "rows": pl.Int64,
            "last_received_at": pl.Float64,
            "labels": pl.Int64,
            "last_label_at": pl.Float64,
        },
        orient="row",
    )
    # An hour lies in one window whatever the length ('12h', '1d', '1w' all start on an hour).
    hour = pl.from_epoch("hour", "us").dt.replace_time_zone("UTC")
    return (
        counted.with_columns(window_start=hour.dt.truncate(every))
        .group_by("window_start")
        .agg(
            pl.col("rows").sum(),
            pl.col("last_received_at").max(),
            pl.col("labels").sum(),
            pl.col("last_label_at").max().fill_null(0.0),
        )
        .sort("window_start")
        .tail(spec.monitoring.max_windows)
    )


def _read_groups(state: pl.DataFrame, starts: list[datetime], every: str) -> list[list[datetime]]:
    """The windows ``starts`` (of ``state``'s) in groups of consecutive windows that together hold about
    ``ROWS_PER_READ`` rows at most (a larger window alone): what one read of the log brings in."""
    rows = dict(zip(state["window_start"].to_list(), state["rows"].to_list()))
    length = _window_length(every)
    groups: list[list[datetime]] = []
    held = 0
    for start in sorted(starts):
        group = groups[-1] if groups else None
        if group is not None and group[-1] + length == start and held + rows[start] <= ROWS_PER_READ:
            group.append(start)
            held += rows[start]
        else:
            groups.append([start])
            held = rows[start]
    return groups


def _window_length(every: str) -> timedelta:
    # Window lengths are whole hours, days or weeks ([monitoring] window), the same in UTC all year.
    n, unit = int(every[:-1]), every[-1]
    return timedelta(hours=n) if unit == "h" else timedelta(days=n * (7 if unit == "w" else 1))


def _window_start(moment: datetime, every: str) -> datetime:
    return pl.Series([moment], dtype=pl.Datetime("us", "UTC")).dt.truncate(every)[0]


def _micros(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def logged_traffic(
    home: Home, spec: ModelSpec, version: int, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """The version's prediction log as a frame, its rows with an event time in [since, until) (None:
    unbounded): the request's declared fields (typed as the reference's), entity attributes joined from the
    spec's entity table, the model's output in the reference's columns, the feedback label as the task reads
    it, latency and status. Read a chunk at a time; no field the spec does not declare is ever decoded."""
    contract = load_contract(spec.resolve(spec.data.contract))
    declared = {rule.name: rule for rule in contract.fields}
    key = spec.features.entity_key
    store = PredictionStore(home.layout.predictions_db)
    try:
        chunks = [
            _logged_chunk(rows, spec, declared)
            for rows in store.logged_rows(
                spec.name, version, None if since is None else _micros(since), None if until is None else _micros(until)
            )
        ]
    finally:
        store.close()
    frame = pl.concat(chunks) if chunks else _logged_chunk([], spec, declared)
    frame = frame.with_columns(*_task_columns(model_task(spec)))
    if spec.data.entities and key is not None:
        entities = read_source(spec.resolve(spec.data.entities))
        wanted = [f.name for f in spec.features.entity_attributes]
        if wanted:  # joined on the keys' canonical text, as serving looked them up (" 0042 " is 42)
            key_type = declared[key].type if key in declared else "string"
            frame = frame.join(
                entities.select(key, *wanted).with_columns(key_text_column(pl.col(key), key_type)), on=key, how="left"
            )
    return frame


def _logged_chunk(rows: list[tuple], spec: ModelSpec, declared: dict[str, FieldRule]) -> pl.DataFrame:
    """Logged rows (``logged_rows``) as a frame: the event time from its number, the entity key as logged
    (canonical text), and each declared request field read from the record's JSON by name and typed."""
    raw = pl.DataFrame(rows, schema=_LOGGED_SCHEMA, orient="row")
    keys = spec.features
    fields = [pl.col("_features").str.json_path_match(_json_path(f.name)).alias(f.name) for f in keys.request]
    frame = raw.with_columns(
        *fields, pl.from_epoch("_event_us", "us").dt.replace_time_zone("UTC").alias(keys.event_time)
    )
    frame = frame.with_columns(_typed(f, declared.get(f.name)) for f in keys.request)
    if keys.entity_key is not None:
        frame = frame.with_columns(pl.col("_entity").alias(keys.entity_key))
    return frame.drop("_features", "_event_us", "_entity")


def _json_path(name: str) -> str:
    return "$['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _task_columns(task: Task) -> list[pl.Expr]:
    """The log's output and feedback columns as the task's checks read them (see storage.prediction_log): a
    binary label 0/1; a multiclass class index and each class's probability from the JSON list; a regression
    value as the output (``_score``) and a float label, never truncated."""
    if task.kind == "binary":
        return [pl.col(LABEL).cast(pl.Int8)]
    if task.kind == "regression":
        return [pl.col(VALUE).alias(SCORE)]
    listed = pl.col(PROBABILITIES).str.json_decode(pl.List(pl.Float64))
    index = pl.col(LABEL).cast(pl.Int64)
    classes = len(task.classes)  # feedback is a class index (serving refuses others): any other is no label
    return [
        pl.when(index.is_between(0, classes - 1)).then(index).alias(LABEL),
        *(listed.list.get(i, null_on_oob=True).alias(name) for i, name in enumerate(proba_columns(task))),
    ]


def monitored_features(spec: ModelSpec, frame: pl.DataFrame) -> list[Feature]:
    """The model's raw inputs that the log carries (request fields and joined entity attributes)."""
    return [f for f in (*spec.features.request, *spec.features.entity_attributes) if f.name in frame.columns]


def _typed(feature: Feature, rule: FieldRule | None) -> pl.Expr:
    # A logged value passed serving's type rules (data.values), which allow one value several spellings:
    # a float sent as 950, a category code as 4 or "4", a 0/1 flag as true. Each is read from its JSON text as
    # the contract declares it, as the reference was, so spelling is not drift; what does not read is null.
    kind = rule.type if rule is not None else _FEATURE_KINDS[feature.type]
    text = pl.col(feature.name)
    lowered = text.str.to_lowercase()
    if kind == "float":
        return text.cast(pl.Float64, strict=False)
    if kind == "integer":
        number = text.cast(pl.Float64, strict=False)
        return pl.coalesce(
            text.cast(pl.Int64, strict=False),
            pl.when(number.round(0) == number).then(number).cast(pl.Int64, strict=False),
            pl.when(lowered == "true").then(1).when(lowered == "false").then(0),
        ).alias(feature.name)
    if kind == "boolean":
        return (
            pl.when(lowered.is_in(["true", "1"]))
            .then(True)
            .when(lowered.is_in(["false", "0"]))
            .then(False)
            .alias(feature.name)
        )
    if kind == "timestamp":
        return parse_times(text).alias(feature.name)
    return text


_FEATURE_KINDS = {"float": "float", "integer": "integer", "boolean": "boolean", "category": "string"}


def _window_checks(
    spec: ModelSpec,
    reference: pl.DataFrame,
    frame: pl.DataFrame,
    all_windows: EventWindows,
    starts: list[datetime],
    full: bool,
) -> pl.DataFrame:
    """Check rows of the given windows only: every check (``full``) or performance alone."""
    rules, event_time = spec.monitoring, spec.features.event_time
    picked = np.isin(all_windows.code, [all_windows.starts.to_list().index(s) for s in starts])
    part = frame.filter(pl.Series(picked))
    windows = EventWindows(part, event_time, rules.window)
    task, metric = model_task(spec), spec.metric
    features = monitored_features(spec, part)
    reference = reference.rename({spec.target.column: LABEL})
    rules = with_performance_limit(rules, reference_metrics(reference, LABEL, task), task, metric)
    reference = with_task_labels(reference, LABEL, task)
    # distributions are compared with the reference's whole windows; its metrics and the estimate's
    # calibration use every row, as the version's own evaluation did
    profiled = whole_windows(reference, event_time, rules.window)
    out = [_checked("performance", _performance(spec, task, metric, rules, part, windows))]
    if full:
        names = [f.name for f in features]
        ref_schema = reference.select([f.name for f in spec.features.request if f.name in reference.columns]).schema
        contract = load_contract(spec.resolve(spec.data.contract))
        field_rules = [*contract.fields, *category_rules(reference, features)]
        # Only the request's own fields can drift in schema: the log's bookkeeping columns, the
        # entity key, event time and joined entity attributes are taken as they are.
        fixed = {f.name for f in spec.features.entity_attributes} | {event_time, spec.features.entity_key}
        expected = pl.Schema(
            {**{c: t for c, t in part.schema.items() if c.startswith("_") or c in fixed}, **ref_schema}
        )
        out.append(
            _checked(
                "quality",
                data_quality(
                    part,
                    windows,
                    expected,
                    names,
                    field_rules,
                    expected_rows(profiled, event_time, rules.window),
                    rules,
                ),
            )
        )
        drift = [
            feature_drift(ReferenceProfile.fit(profiled, features, rules.psi_bins), part, windows, rules),
            task_prediction_drift_by_window(profiled, part, task, windows, rules),
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NannyML warns about pandas internals on every call
            rec = reconstruction_drift(profiled, part, windows, event_time, features, rules)
            est = estimate_performance(reference, part, windows, event_time, LABEL, task, metric, features, rules)
        drift.append(
            rec.select(
                "window_start",
                feature=pl.lit("*"),
                method=pl.lit("reconstruction_error"),
                value="reconstruction_error",
                threshold="threshold",
                rows="rows",
                alert="alert",
            )
        )
        out.append(_checked("drift", pl.concat(drift)))
        out.append(_checked("estimated", estimated_checks(est)))
        out.append(_checked("serving", _serving(part, windows)))
    every = rules.window
    return (
        pl.concat(out)
        .filter(pl.col("window_start").is_in(starts))
        .with_columns(window_end=pl.col("window_start").dt.offset_by(every))
    )


def estimated_checks(est: pl.DataFrame) -> pl.DataFrame:
    """Estimates (estimation.TASK_ESTIMATE_SCHEMA) as check rows: each metric's estimate under its own name, its
    band as '<metric>_lower' and '<metric>_upper' (which never alert)."""
    rows = [
        est.select(
            "window_start",
            feature=pl.lit("*"),
            method="method",
            value="estimated",
            threshold="threshold",
            rows="rows",
            alert="alert",
        )
    ]
    rows += [
        est.select(
            "window_start",
            feature=pl.lit("*"),
            method=pl.col("method") + f"_{bound}",
            value=bound,
            threshold=pl.lit(None, pl.Float64),
            rows="rows",
            alert=pl.lit(False),
        )
        for bound in ("lower", "upper")
    ]
    return pl.concat(rows)


def with_auc_floor(rules: MonitoringSection, reference: pl.DataFrame) -> MonitoringSection:
    """A binary model's rules with ``performance.min_auc`` set from a reference frame (``LABEL``, ``SCORE``);
    see ``with_performance_limit``."""
    return with_performance_limit(rules, reference_metrics(reference, LABEL, BINARY), BINARY, "auc")


def with_performance_limit(
    rules: MonitoringSection, reference: dict[str, float], task: Task, metric: str
) -> MonitoringSection:
    """The rules with the judging metric's limit set: as the spec sets it, else from the version's own
    reference metrics (its held-out rows' out-of-sample outputs), so a window is flagged against what this
    model achieved, not against a number picked on another data set. A binary model's AUC floor is the
    reference AUC less ``max_auc_drop`` (its estimate is judged by it whatever the metric); another metric's
    limit is its reference value less ``max_metric_drop``, or times 1 + ``max_metric_rise`` for an error."""
    performance = rules.performance
    if task.kind == "binary" and performance.min_auc is None:
        auc = reference.get("auc", math.nan)
        floor = auc - performance.max_auc_drop if not math.isnan(auc) else 0.0  # no reference AUC: nothing is flagged
        performance = msgspec.structs.replace(performance, min_auc=floor)
    value = reference.get(metric, math.nan)
    if metric != "auc" and performance.metric_limit is None and not math.isnan(value):  # unknown: nothing is flagged
        limit = (
            value - performance.max_metric_drop
            if higher_is_better(metric)
            else value * (1 + performance.max_metric_rise)
        )
        performance = msgspec.structs.replace(performance, metric_limit=limit)
    return msgspec.structs.replace(rules, performance=performance)


def _performance(
    spec: ModelSpec, task: Task, metric: str, rules: MonitoringSection, part: pl.DataFrame, windows: EventWindows
) -> pl.DataFrame:
    segments = [s for s in spec.validation.segments if s in part.columns]
    found = [task_performance_by_window(part, windows, LABEL, task, metric, rules, segment=s) for s in segments] or [
        task_performance_by_window(part, windows, LABEL, task, metric, rules)
    ]
    return pl.concat(found).unique(["window_start", "feature", "method"], keep="first", maintain_order=True)


def _serving(part: pl.DataFrame, windows: EventWindows) -> pl.DataFrame:
    """Latency percentiles over requests, throughput over the window's arrival span, error rate over rows."""
    coded = part.select(REQUEST, RECEIVED, LATENCY, STATUS).with_columns(_window=pl.Series(windows.code))
    per_window = (
        coded.filter(pl.col("_window") >= 0)
        .group_by("_window")
        .agg(rows=pl.len(), errors=(pl.col(STATUS) != 200).sum(), span=pl.col(RECEIVED).max() - pl.col(RECEIVED).min())
    )
    requests = (
        coded.filter(pl.col("_window") >= 0)
        .group_by("_window", REQUEST)
        .agg(pl.col(LATENCY).first())
        .group_by("_window")
        .agg(requests=pl.len(), **{f"p{q}": pl.col(LATENCY).quantile(q / 100, "linear") for q in (50, 95, 99)})
    )
    stats = per_window.join(requests, on="_window")
    values = {m: np.full(windows.count, np.nan) for m in SERVING_METHODS}
    rows = np.zeros(windows.count, dtype=np.int64)
    for r in stats.iter_rows(named=True):
        w = r["_window"]
        rows[w] = r["rows"]
        values["requests"][w] = r["requests"]
        values["throughput_rps"][w] = r["rows"] / r["span"] if r["span"] > 0 else np.nan
        values["error_rate"][w] = r["errors"] / r["rows"]
        for q in (50, 95, 99):
            values[f"latency_p{q}_ms"][w] = r[f"p{q}"]
    return pl.concat([checks(windows, "*", m, values[m], np.nan, rows, 1) for m in SERVING_METHODS])


def machine_checks(probe: MachineProbe | None = None) -> list[tuple[str, str, float | None]]:
    """(feature, method, value) of one machine reading: CPU, memory, and each GPU through NVML."""
    own = probe is None
    probe = probe or MachineProbe()
    try:
        if own:
            time.sleep(0.2)  # CPU use is measured between two readings of the probe
        snapshot: MachineSnapshot = probe.read(measure_disk=False)
    finally:
        if own:
            probe.close()
    found = [
        ("cpu", "percent", snapshot.cpu.total_percent),
        ("memory", "used_bytes", float(snapshot.memory.used_bytes)),
        ("memory", "percent", 100 * snapshot.memory.used_bytes / max(snapshot.memory.total_bytes, 1)),
        ("process", "rss_bytes", float(snapshot.process.rss_bytes)),
    ]
    for g in snapshot.gpu.gpus:
        found += [
            (f"gpu{g.index}", "utilization_percent", g.utilization_percent),
            (f"gpu{g.index}", "memory_used_bytes", g.memory_used_bytes),
            (f"gpu{g.index}", "power_w", g.power_w),
            (f"gpu{g.index}", "energy_mj", g.energy_mj),
        ]
    return found


def pipeline_checks(home: Home, model: str) -> list[tuple[str, str, float | None]]:
    """Training-run health: the current success and failure streaks, and runs in all. A retrain skipped with
    nothing new neither breaks nor extends a streak (``finished_pipeline_statuses`` leaves it out): failing
    runs followed by skips still fail, and a skip after successes is no evidence training still works."""
    statuses = finished_pipeline_statuses(home.conn, model)
    streak = next((i for i, s in enumerate(statuses) if s != statuses[0]), len(statuses)) if statuses else 0
    last = statuses[0] if statuses else None
    return [
        ("*", "failure_streak", float(streak if last == "failed" else 0)),
        ("*", "success_streak", float(streak if last == "succeeded" else 0)),
        ("*", "runs", float(len(statuses))),
    ]


def log_overflow_checks(home: Home, model: str, conn, now: float) -> list[tuple[str, str, float | None]]:
    """Prediction-log rows of the model the server's full queue refused (so never logged, never monitored)
    since the previous monitor run; the serving process records them in predictions.db."""
    since = last_computed(conn, model, "serving", "log_overflow")
    store = PredictionStore(home.layout.predictions_db)
    try:
        refused = store.overflow_between(model, since or 0.0, now)
    finally:
        store.close()
    return [("*", "log_overflow", float(refused))]


def _snapshot_checks(check: str, found: list[tuple[str, str, float | None]]) -> pl.DataFrame:
    """Rows of a once-per-run check; their window is the run's moment (filled in by the caller)."""
    return pl.DataFrame(
        {
            "window_start": [None] * len(found),
            "window_end": [None] * len(found),
            "check": [check] * len(found),
            "feature": [f for f, _, _ in found],
            "method": [m for _, m, _ in found],
            "value": [None if v is None else float(v) for _, _, v in found],
            "threshold": [None] * len(found),
            "rows": [0] * len(found),
            "alert": [False] * len(found),
        },
        schema={
            k: RESULT_SCHEMA[k]
            for k in ("window_start", "window_end", "check", "feature", "method", "value", "threshold", "rows", "alert")
        },
    )


def _checked(check: str, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(check=pl.lit(check), window_end=pl.lit(None, RESULT_SCHEMA["window_end"])).select(
        "window_start", "window_end", "check", "feature", "method", "value", "threshold", "rows", "alert"
    )

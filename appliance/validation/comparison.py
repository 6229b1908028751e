"""Like with like: a version and production scored by their own ONNX models on the same labelled rows.

A version's metrics in the registry come from its own held-out evaluation rows, and versions trained at
different times held out different days: setting those numbers side by side compares the days as much as the
models (a version whose live AUC was 0.5 showed "+0.004 AUC" over production). Here both versions score the
same rows, and the comparison says which:

1. the newest labelled live traffic, when there is enough: predictions from the log whose outcomes came back
   (whichever version served them), by event-time window (``[monitoring] window``), newest first, widened a
   window at a time until the rows hold ``[monitoring] min_window_rows`` rows and the metric is defined on them
   (a binary model: ``[validation] segment_min_positives`` rows of each class; a multiclass model two classes;
   a regression two values);
2. else the held-out evaluation rows of the version trained on the newer data (stored with it as its
   monitoring reference).

Either way only rows neither version trained on count: those at or after the later of the two versions' first
held-out event times (a version trains on the rows before its held-out days, so its held-out rows begin where
its training rows end). A logged request carries only its own values; its stored features (entity attributes,
windowed aggregations, derived features) are computed point in time as a training set's are, over the
ingested snapshots and every answered request in the log, which is the history the online store had when it
answered.

The difference comes with a 95 % interval (``appliance.validation.paired``: DeLong for a binary AUC, a paired
bootstrap otherwise), so a "+0.004" that chance could give reads as no clear difference.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
import numpy as np
import polars as pl

from appliance.data.contract import key_text_column
from appliance.data.declared import entity_key_type, model_task
from appliance.data.snapshots import list_snapshots, read_snapshots
from appliance.data.sources import read_source
from appliance.errors import InvalidInput, NotReady
from appliance.features.encoding import FeatureSchema
from appliance.features.feature_table import feature_rows
from appliance.features.point_in_time import point_in_time_features
from appliance.home import Home
from appliance.monitoring.monitor import LABEL, STATUS, logged_traffic
from appliance.monitoring.reference import load_reference
from appliance.scoring import onnx_model
from appliance.scoring.metrics import format_value
from appliance.spec import ModelSpec
from appliance.task import Task, metric_label
from appliance.validation.paired import Difference, paired_difference, signed

ANSWERED = 200


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """A version against production on the same rows."""

    model: str
    candidate: int
    production: int
    difference: Difference  # candidate and production values, candidate − production and its interval
    rows: int
    rows_from: Literal["live", "evaluation"]
    rows_label: str  # which rows: "live labelled window 2026-10-20, 1,240 rows"
    note: str = ""  # why the live traffic was not used, when it was not

    def line(self) -> str:
        """One line a person reads: both values, the difference and its interval, the verdict, the rows."""
        d = self.difference
        name = metric_label(d.metric)
        return (
            f"v{self.candidate} {name} {format_value(d.metric, d.candidate)} vs production v{self.production} "
            f"{format_value(d.metric, d.production)} on the same rows: {signed(d.metric, d.value)} "
            f"({d.interval_text()}), {d.verdict} — {self.rows_label}"
        )


class LabelledTraffic:
    """A model's answered and labelled requests from the prediction log, read once for any number of
    comparisons; their stored features are computed only for the rows a comparison uses."""

    def __init__(self, home: Home, spec: ModelSpec):
        self.home, self.spec = home, spec
        frames = [
            f for f in (logged_traffic(home, spec, v.version) for v in home.registry.versions(spec.name)) if f.height
        ]
        keys = spec.features
        if frames:
            answered = pl.concat(frames, how="diagonal_relaxed").filter(pl.col(STATUS) == ANSWERED)
        else:
            answered = pl.DataFrame(schema={keys.event_time: pl.Datetime("us", "UTC"), LABEL: pl.Float64})
        if keys.entity_key is not None and keys.entity_key in answered.columns:
            answered = answered.with_columns(key_text_column(pl.col(keys.entity_key), entity_key_type(spec)))
        self.answered = answered
        self.labelled = answered.filter(pl.col(LABEL).is_not_null()).sort(keys.event_time)
        self._history: pl.DataFrame | None = None

    def features(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Logged rows with the spec's model features as of each row's event time (see the module)."""
        keys, spec = self.spec.features, self.spec
        request = [f.name for f in keys.request]
        entity = [keys.entity_key] if keys.entity_key is not None else []
        rows = rows.with_columns(pl.lit(None).alias(c) for c in [*entity, *request] if c not in rows.columns)
        rows = rows.select(*entity, keys.event_time, *request, LABEL)
        entities = read_source(spec.resolve(spec.data.entities)) if spec.data.entities else None
        table = feature_rows(keys, self.history()) if entity else None
        return point_in_time_features(keys, rows, table, entities)

    def history(self) -> pl.DataFrame:
        """Every event the online store has seen: the ingested snapshots' and the answered requests', each
        once (an answered request later ingested as feedback is in both)."""
        if self._history is None:
            keys, spec = self.spec.features, self.spec
            key, t = keys.entity_key, keys.event_time
            assert key is not None, "only a model with an entity keeps history"
            columns = [key, t, *sorted({a.column for a in keys.aggregations if a.column})]
            snapshots = list_snapshots(self.home.conn, spec.name)
            parts = []
            if snapshots:
                events = read_snapshots(self.home.offline, snapshots)
                parts.append(
                    events.with_columns(key_text_column(pl.col(key), entity_key_type(spec))).select(
                        [c for c in columns if c in events.columns]
                    )
                )
            served = self.answered.select([c for c in columns if c in self.answered.columns])
            if parts and served.height:
                served = served.cast(
                    {c: parts[0].schema[c] for c in served.columns if c in parts[0].columns}, strict=False
                ).join(parts[0].select(key, t), on=[key, t], how="anti", nulls_equal=True)
            parts.append(served)
            self._history = pl.concat(parts, how="diagonal_relaxed")
        return self._history


def compare_with_production(
    home: Home, model: str, candidate: int, production: int | None = None, traffic: LabelledTraffic | None = None
) -> Comparison:
    """``candidate`` against ``production`` (default: the version the production alias names) on the same rows,
    the newest labelled live window both can be scored on, else the newer held-out evaluation rows."""
    spec = home.spec(model)
    production = home.registry.alias(model, "production") if production is None else production
    if production is None:
        raise NotReady(f"'{model}' has no production version to compare v{candidate} with; promote one first")
    if candidate == production:
        raise InvalidInput(f"v{candidate} is {model}'s production version; compare another version with it")
    task = model_task(spec)
    references = {v: load_reference(home, model, v) for v in (candidate, production)}
    t = spec.features.event_time
    held_out_from = {v: _moment(frame[t].min()) for v, frame in references.items()}
    since = max(held_out_from.values())
    traffic = traffic or LabelledTraffic(home, spec)
    live, note = _live_window(spec, task, traffic.labelled, since)
    if live is not None:
        rows = traffic.features(live)
        y = rows[LABEL].cast(pl.Float64 if task.kind == "regression" else pl.Int64).to_numpy()
        label = _live_label(spec, live, rows.height)
        rows_from: Literal["live", "evaluation"] = "live"
    else:
        newer = max(held_out_from, key=lambda v: (held_out_from[v], v))
        rows = references[newer]
        y = task.labels(rows[spec.target.column])
        label = evaluation_label(f"v{newer}'s", rows[t], rows.height)
        rows_from = "evaluation"
    outputs = {v: version_output(home, model, v, rows, task) for v in (candidate, production)}
    difference = paired_difference(task, spec.metric, y, outputs[candidate], outputs[production])
    return Comparison(
        model=model,
        candidate=candidate,
        production=production,
        difference=difference,
        rows=rows.height,
        rows_from=rows_from,
        rows_label=label,
        note=note,
    )


def version_output(home: Home, model: str, version: int, rows: pl.DataFrame, task: Task) -> np.ndarray:
    """A registered version's output on rows that hold its features by name, through its own ONNX model and
    feature schema (its category codes, its column order)."""
    mv = home.registry.version(model, version)
    schema = msgspec.convert(mv.feature_schema, FeatureSchema)
    missing = lacking_features(schema, rows)
    if missing:
        raise InvalidInput(
            f"v{version} of '{model}' takes feature(s) {missing} that the compared rows lack (its "
            "spec has changed since); compare versions trained with the same features"
        )
    sess = onnx_model.session(home.artifacts.get(mv.artifact_sha256), ["CPUExecutionProvider"])
    return onnx_model.predict(sess, schema.encode_frame(rows), task)


def lacking_features(schema: FeatureSchema, rows: pl.DataFrame) -> list[str]:
    """The features a version's ``schema`` takes that ``rows`` lack: its spec's features have changed since."""
    return [c for c in schema.names if c not in rows.columns]


def evaluation_label(whose: str, times: pl.Series, rows: int) -> str:
    """'v3's evaluation days 2026-10-11..2026-10-20, 5,600 rows' (``whose``: "v3's", "this run's")."""
    if times.null_count() == times.len():
        return f"{whose} evaluation rows, {rows:,} rows"
    first, last = _moment(times.min()), _moment(times.max())
    days = f"day {first:%Y-%m-%d}" if first.date() == last.date() else f"days {first:%Y-%m-%d}..{last:%Y-%m-%d}"
    return f"{whose} evaluation {days}, {rows:,} rows"


def _live_window(
    spec: ModelSpec, task: Task, labelled: pl.DataFrame, since: datetime
) -> tuple[pl.DataFrame | None, str]:
    """The newest labelled windows from ``since`` on that hold enough rows (see the module), or None and why."""
    t = spec.features.event_time
    fresh = labelled.filter(pl.col(t) >= since)
    if fresh.height == 0:
        return None, f"no live labelled rows from {since:%Y-%m-%d} on, where neither version trained"
    window = spec.monitoring.window
    starts = fresh[t].dt.truncate(window)
    newest_first = starts.unique().sort(descending=True)
    for start in newest_first:
        rows = fresh.filter(starts >= start)
        if _enough(spec, task, rows[LABEL]):
            return rows, ""
    return None, (
        f"{fresh.height:,} live labelled rows from {since:%Y-%m-%d} on are too few "
        f"(at least {spec.monitoring.min_window_rows:,}"
        + (f", {spec.validation.segment_min_positives} of each class" if task.kind == "binary" else "")
        + ")"
    )


def _moment(value: object) -> datetime:
    """An event time read from a frame (the event-time column holds datetimes)."""
    assert isinstance(value, datetime), f"an event time, not {value!r}"
    return value


def _enough(spec: ModelSpec, task: Task, labels: pl.Series) -> bool:
    if labels.len() < spec.monitoring.min_window_rows:
        return False
    if task.kind == "binary":
        positives = int((labels == 1).sum())
        least = spec.validation.segment_min_positives
        return positives >= least and labels.len() - positives >= least
    return labels.n_unique() >= 2


def _live_label(spec: ModelSpec, live: pl.DataFrame, rows: int) -> str:
    """'live labelled window 2026-10-20, 1,240 rows', or for several 'live labelled windows
    2026-10-18..2026-10-20 (1d each), 3,100 rows'."""
    window = spec.monitoring.window
    starts = live[spec.features.event_time].dt.truncate(window)
    first, last = (
        f"{_moment(s):%Y-%m-%d}" if window.endswith("d") else f"{_moment(s):%Y-%m-%d %H:%M}"
        for s in (starts.min(), starts.max())
    )
    if first == last:
        return f"live labelled window {first}, {rows:,} rows"
    return f"live labelled windows {first}..{last} ({window} each), {rows:,} rows"

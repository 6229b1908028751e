"""The online side: materialize each entity's latest feature row, and complete requests from it.

``materialize`` runs the feature table's SQL (the one the training set joins) and keeps each
entity's latest row, with its tail of recent events (``tail``) from which the server moves the row
forward by every request it answers (``online_updates``). Materializing again (``up`` does at each
start) keeps what those requests added after each entity's newest ingested event, so a row never goes
back in time. ``OnlineFeatures.complete`` applies the same point-in-time rule and the same
derived-feature code as the offline join, so a request carries only the entity key and the
request-time values (and, optionally, its event time; without one the request happens now).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator

import msgspec
import numpy as np
import polars as pl

from appliance import progress
from appliance.data.snapshots import list_snapshots, read_snapshots
from appliance.data.sources import read_source
from appliance.data.values import MAX_ENTITY_CHARS, KeyType, entity_key, request_time
from appliance.errors import InvalidInput, NotReady
from appliance.features.feature_table import FEATURE_TIME, feature_rows, stored_names
from appliance.features.online_updates import UpdateTarget
from appliance.features.point_in_time import derive, ttl_micros, visible
from appliance.features.tail import TailPlan, latest_tails
from appliance.home import Home
from appliance.spec import FeaturesSection, ModelSpec
from storage.online_store import OnlineStore

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class MaterializeReport(msgspec.Struct):
    namespace: str
    rows: int  # entities written
    with_history: int  # of which have at least one ingested event
    as_of: str | None  # the newest event time in the history
    seconds: float
    kept: int = 0  # rows that kept the requests answered since their entity's newest ingested event


def namespace(model: str, features: FeaturesSection) -> str:
    """The online store namespace of a model's stored features: a new definition gets a new one."""
    stored = {
        "entity_key": features.entity_key,
        "event_time": features.event_time,
        "entity_attributes": features.entity_attributes,
        "aggregations": features.aggregations,
    }
    return f"{model}:{hashlib.sha256(_encode(stored)).hexdigest()[:16]}"


def update_targets(model: str, definitions: list[FeaturesSection]) -> list[UpdateTarget]:
    """What the prediction log's writer needs to move a model's online rows forward: one target per
    namespace among these definitions (the spec's and its served versions'), as plain data."""
    targets: dict[str, UpdateTarget] = {}
    for features in definitions:
        name = namespace(model, features)
        if name not in targets:
            plan = TailPlan(features)
            targets[name] = UpdateTarget(name, features.event_time, plan.columns, plan.horizon, plan.rows_sql)
    return list(targets.values())


def materialize(
    store: OnlineStore, model: str, features: FeaturesSection, history: pl.DataFrame, entities: pl.DataFrame | None
) -> MaterializeReport:
    """Write the latest stored features of every entity (with history, attributes, or both), keeping the
    events answered requests moved an entity's row by since its newest ingested one: no row goes back in time."""
    with progress.step(f"materialize {namespace(model, features)}", unit="entities") as written:
        return _materialize(store, model, features, history, entities, written)


def _materialize(
    store: OnlineStore,
    model: str,
    features: FeaturesSection,
    history: pl.DataFrame,
    entities: pl.DataFrame | None,
    written: progress.Step,
) -> MaterializeReport:
    started = time.perf_counter()
    key = features.entity_key
    # Keys are stored as their canonical text (an integer's digits), the form requests are looked up by.
    latest = feature_rows(features, history, latest_only=True).with_columns(
        pl.col(FEATURE_TIME).dt.epoch("us").alias(FEATURE_TIME), pl.col(key).cast(pl.String)
    )
    attributes = [f.name for f in features.entity_attributes]
    if attributes and entities is not None:
        latest = latest.join(
            entities.select(key, *attributes).with_columns(pl.col(key).cast(pl.String)),
            on=key,
            how="full",
            coalesce=True,
        )
    names = [n for n in stored_names(features) if n in latest.columns]
    written.total = latest.height

    def rows() -> Iterator[tuple[str, int | None, bytes]]:
        for i, (entity, at, *values) in enumerate(latest.select(key, FEATURE_TIME, *names).iter_rows()):
            if i % 1_000 == 0:
                written.update(i)
            yield entity, at, _encode(dict(zip(names, values)))
        written.update(latest.height)

    as_of = history[features.event_time].max() if history.height else None
    # An entity's answered requests after its newest ingested event are in no snapshot yet: the store keeps
    # them from the entity's tail, so the row holds the feature table over history and those requests. Older
    # ones are left to the history (ingest caught up: a request's labelled row is ingested as its event).
    plan = TailPlan(features)
    count, kept = store.replace(
        namespace(model, features),
        rows(),
        {"model": model, "as_of": as_of.isoformat() if as_of else None},
        latest_tails(features, history),  # what serving moves each row forward from
        plan.horizon,
        plan.rows_sql,
    )
    return MaterializeReport(
        namespace(model, features),
        count,
        int(latest[FEATURE_TIME].is_not_null().sum()),
        as_of.isoformat() if as_of else None,
        time.perf_counter() - started,
        kept,
    )


def materialize_model(home: Home, spec: ModelSpec) -> list[MaterializeReport]:
    """Materialize a model's features as its spec defines them, and as its served versions were trained
    (nothing for a model without an entity: it keeps no features)."""
    if spec.features.entity_key is None:
        return []
    history = read_snapshots(home.offline, list_snapshots(home.conn, spec.name))
    entities = read_source(spec.resolve(spec.data.entities)) if spec.data.entities else None
    reports, done = [], set()
    for features in [spec.features, *served_definitions(home, spec.name)]:
        if features.entity_key is None:
            continue
        ns = namespace(spec.name, features)
        if ns not in done:
            done.add(ns)
            reports.append(materialize(home.online, spec.name, features, history, entities))
    return reports


def served_definitions(home: Home, model: str) -> list[FeaturesSection]:
    """The feature definitions the production and candidate versions were trained with."""
    found = []
    for alias in ("production", "candidate"):
        version = home.registry.alias(model, alias)
        if version is not None:
            definitions = home.registry.version(model, version).feature_schema.get("definitions")
            if definitions:
                found.append(msgspec.convert(definitions, FeaturesSection))
    return found


class OnlineFeatures:
    """Completes request records with a model version's stored and derived features (only the derived
    ones for a model without an entity, which keeps nothing in the store)."""

    def __init__(
        self,
        store: OnlineStore,
        model: str,
        features: FeaturesSection,
        key_type: KeyType = "string",
        key_nullable: bool = False,
    ):
        self.store, self.model, self.features, self.key_type = store, model, features, key_type
        self.key_nullable = key_nullable  # a request without an entity gets none of its stored features
        self.namespace = namespace(model, features)
        self.ttl = ttl_micros(features)
        self.attributes = [f.name for f in features.entity_attributes]
        self.aggregations = [a.name for a in features.aggregations]
        self.inputs = sorted({n for d in features.derived for n in d.of})
        self._known_materialized = False

    def complete(self, records: list) -> list[dict]:
        """New records with the entity's stored features and the derived ones merged in."""
        if len(records) == 1:
            return [self.complete_one(records[0])]
        return self._complete_batch(records)

    def complete_one(self, record: object) -> dict:
        """One request record completed, exactly as ``complete([record])[0]``, in plain Python floats:
        numpy's per-call overhead is most of the cost of a single row."""
        entity = self._entity(record, "")
        stored = self._read([entity]).get(entity)
        at, values = (stored[0], _decode(stored[1])) if stored else (None, {})
        when = record.get(self.features.event_time)
        event_time = float(time.time_ns() // 1000) if when is None else request_time(when, self.features.event_time, "")
        feature_time = math.nan if at is None else float(at)
        usable = visible(feature_time, event_time, self.ttl)
        if not usable:
            feature_time = math.nan
        row = self._merged(record, values, usable)
        inputs = {name: _number(row.get(name)) for name in self.inputs}
        for name, value in derive(self.features.derived, inputs, event_time, feature_time).items():
            row[name] = None if value != value else value  # NaN: missing
        return row

    def _complete_batch(self, records: list) -> list[dict]:
        # The vectorized path for many records; on a one-record list it is what every request took
        # before complete_one (scripts/bench/complete.py compares the two).
        single = len(records) == 1
        entities = [self._entity(record, _where(single, i)) for i, record in enumerate(records)]
        found = self._read(entities if single else list(set(entities)))
        n = len(records)
        event_time, feature_time = np.empty(n), np.full(n, np.nan)
        stored = []
        now = None
        time_field = self.features.event_time
        for i, (record, entity) in enumerate(zip(records, entities)):
            when = record.get(time_field)
            if when is None:
                now = now if now is not None else time.time_ns() // 1000
                event_time[i] = now
            else:
                event_time[i] = request_time(when, time_field, _where(single, i))
            at, payload = found.get(entity, _NOTHING)
            if at is not None:
                feature_time[i] = at
            stored.append(_decode(payload))
        seen = visible(feature_time, event_time, self.ttl)
        feature_time[~seen] = np.nan
        merged = [
            self._merged(record, values, usable) for record, values, usable in zip(records, stored, seen.tolist())
        ]
        inputs = {name: np.array([_number(row.get(name)) for row in merged]) for name in self.inputs}
        for name, column in derive(self.features.derived, inputs, event_time, feature_time).items():
            for row, value in zip(merged, column.tolist()):
                row[name] = None if value != value else value  # NaN: missing
        return merged

    def _merged(self, record: dict, values: dict, usable: bool) -> dict:
        # The request's values, then the stored ones: attributes always, aggregations only if visible.
        row = dict(record)
        for name in self.attributes:
            row[name] = values.get(name)
        for name in self.aggregations:
            row[name] = values.get(name) if usable else None
        return row

    def _entity(self, record: object, where: str) -> str | None:
        if type(record) is not dict:
            raise InvalidInput(f"{where}each record must be a JSON object of named features")
        name = self.features.entity_key
        if name is None:
            return None
        entity = record.get(name)
        if type(entity) is str and self.key_type == "string" and len(entity) <= MAX_ENTITY_CHARS:
            return entity  # the common case, without a call
        if entity is None and self.key_nullable:
            return None
        return entity_key(entity, self.key_type, name, where)

    def _read(self, entities: list) -> dict[str, tuple[int | None, bytes]]:
        # The stored rows of the entities that have one; none at all is fine only once materialized.
        if not (self.attributes or self.aggregations):
            return {}
        if None in entities:  # requests with no entity (a nullable key) have nothing stored
            entities = [e for e in entities if e is not None]
            if not entities:
                return {}
        found = self.store.read(self.namespace, entities)
        if not found and not self._materialized():
            raise NotReady(
                f"the online store holds no features of model '{self.model}' as this version "
                f"defines them; run `appliance features materialize {self.model}`"
            )
        return found

    def _materialized(self) -> bool:
        # Once written, a namespace stays materialized (it is only ever replaced): ask until it is.
        if not self._known_materialized:
            self._known_materialized = self.store.materialization(self.namespace) is not None
        return self._known_materialized


_NOTHING = (None, b"{}")


def _where(single: bool, i: int) -> str:
    return "" if single else f"record {i}: "


def _number(value: object) -> float:
    # A wrong type, or an integer beyond a float's range, becomes NaN here; the record encoder then
    # names the field and what is wrong with it.
    if type(value) not in (int, float, bool):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan

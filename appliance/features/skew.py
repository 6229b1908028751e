"""Training/serving skew: the online store's values against an offline recomputation."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import msgspec
import polars as pl

from appliance.data.snapshots import list_snapshots, read_snapshots
from appliance.data.sources import read_source
from appliance.errors import InvalidInput, NotReady
from appliance.features.feature_table import feature_rows
from appliance.features.online import OnlineFeatures, namespace
from appliance.features.point_in_time import point_in_time_features
from appliance.home import Home
from appliance.spec import ModelSpec

# Sums of the same floats in another order may differ in the last bits; anything more is skew.
RELATIVE_TOLERANCE = 1e-9


class Mismatch(msgspec.Struct):
    entity: str
    feature: str
    online: object
    offline: object


class SkewReport(msgspec.Struct):
    namespace: str
    as_of: str  # the event time both sides were asked for: just after the newest ingested
    entities: int
    features: list[str]
    mismatches: list[Mismatch]
    ahead: int = 0  # entities whose row answered requests moved past their own newest ingested event


def check_skew(home: Home, spec: ModelSpec, sample: int = 200, seed: int = 0) -> SkewReport:
    """Compare stored features of a seeded sample of entities with the offline join at the same time."""
    features = spec.features
    if features.entity_key is None:
        raise InvalidInput(f"model '{spec.name}' has no entity: it keeps no online features to compare")
    store_namespace = namespace(spec.name, features)
    if home.online.materialization(store_namespace) is None:
        raise NotReady(
            f"model '{spec.name}' has no materialized features to check; run "
            f"`appliance features materialize {spec.name}` first"
        )
    # Both sides are asked for an event just after the newest one ingested: a store materialized
    # before later data arrived shows up as skew.
    history = read_snapshots(home.offline, list_snapshots(home.conn, spec.name))
    newest = history[features.event_time].max() if history.height else None
    as_of = newest + timedelta(microseconds=1) if newest is not None else datetime.now(UTC)
    # A row a server moved forward past its entity's newest ingested event holds answered requests the
    # offline history lacks until their labels are ingested (materialization keeps them): not comparable,
    # so counted apart and not sampled. Per entity: one entity's history may end before another's.
    key, t = features.entity_key, features.event_time
    ingested = (
        dict(history.group_by(pl.col(key).cast(pl.String)).agg(pl.col(t).max().dt.epoch("us")).iter_rows())
        if history.height
        else {}
    )
    times = {e: at for e, (at, _) in home.online.read(store_namespace, home.online.entities(store_namespace)).items()}
    entities = sorted(e for e, at in times.items() if at is None or at <= ingested.get(e, -math.inf))
    ahead = len(times) - len(entities)
    entities = sorted(random.Random(seed).sample(entities, min(sample, len(entities))))
    online = OnlineFeatures(home.online, spec.name, features).complete(
        [{key: e, t: as_of.isoformat()} for e in entities]
    )
    rows = pl.DataFrame(
        {key: entities, t: [as_of] * len(entities)}, schema={key: pl.String, t: pl.Datetime("us", "UTC")}
    )
    offline = point_in_time_features(
        features,
        rows,
        feature_rows(features, history),
        read_source(spec.resolve(spec.data.entities)) if spec.data.entities else None,
    ).to_dicts()
    stored = {f.name for f in features.entity_attributes} | {a.name for a in features.aggregations}
    # Derived features that need no request value (since_last) depend on stored state only.
    names = [
        n
        for n in (
            *(f.name for f in features.entity_attributes),
            *(a.name for a in features.aggregations),
            *(d.name for d in features.derived if all(i in stored for i in d.of)),
        )
    ]
    mismatches = [
        Mismatch(e, n, on[n], off[n])
        for e, on, off in zip(entities, online, offline)
        for n in names
        if not same_value(on[n], off[n])
    ]
    return SkewReport(store_namespace, as_of.isoformat(), len(entities), names, mismatches, ahead)


def same_value(a: object, b: object) -> bool:
    """Whether an online and an offline value agree (both missing, or equal within the tolerance)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)
    return a == b

"""Training sets: labelled events with their point-in-time features, split by event time."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from appliance.errors import InvalidInput
from appliance.features.feature_table import feature_rows
from appliance.features.point_in_time import point_in_time_features
from appliance.spec import ModelSpec


def build_training_set(spec: ModelSpec, events: pl.DataFrame, entities: pl.DataFrame | None) -> pl.DataFrame:
    """Events with the spec's features and target, one row per labelled event, in event-time order.

    Every event is also history: the windowed aggregations of a labelled event at ``t`` come from
    the entity's events strictly before ``t`` (see ``point_in_time``).
    """
    keys = spec.features
    if keys.entity_attributes and entities is None:
        raise InvalidInput(f"model '{spec.name}' has entity attributes but its spec names no "
                           "[data] entities file")
    history = [keys.entity_key, keys.event_time, *sorted({a.column for a in keys.aggregations if a.column})]
    missing = [c for c in history if c not in events.columns]
    if missing:
        raise InvalidInput(f"training data lacks column(s) {missing} that the spec of '{spec.name}' uses")
    labelled = (events.filter(pl.col(spec.target.column).is_not_null())
                .sort(keys.event_time, maintain_order=True))
    frame = point_in_time_features(keys, labelled, feature_rows(keys, events.select(history)), entities)
    columns = [keys.event_time, keys.entity_key, *(f.name for f in spec.model_features), spec.target.column]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"training data lacks column(s) {missing} that the spec of '{spec.name}' uses")
    return frame.select(columns)


def split_by_time(spec: ModelSpec, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, datetime]:
    """Train on the days before the cutoff, evaluate on the last ``eval_days`` whole days."""
    times = frame[spec.features.event_time]
    last_day = times.max().replace(hour=0, minute=0, second=0, microsecond=0)
    cutoff = last_day - timedelta(days=spec.training.eval_days - 1)
    train = frame.filter(pl.col(spec.features.event_time) < cutoff)
    evaluation = frame.filter(pl.col(spec.features.event_time) >= cutoff)
    for part, name in ((train, "training"), (evaluation, "evaluation")):
        labels = part[spec.target.column]
        if part.height == 0 or labels.n_unique() < 2:
            raise InvalidInput(
                f"the {name} split (cutoff {cutoff:%Y-%m-%d}) has {part.height} rows and needs both "
                "classes; ingest more days or lower training.eval_days in the spec"
            )
    return train, evaluation, cutoff

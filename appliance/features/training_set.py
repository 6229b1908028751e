"""Training sets: labelled events joined with their entity's attributes, split by event time."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from appliance.errors import InvalidInput
from appliance.spec import ModelSpec


def build_training_set(spec: ModelSpec, events: pl.DataFrame, entities: pl.DataFrame | None) -> pl.DataFrame:
    """Events with the spec's features and target, one row per labelled event, in event-time order."""
    keys = spec.features
    if spec.features.entity_attributes:
        if entities is None:
            raise InvalidInput(f"model '{spec.name}' has entity attributes but its spec names no "
                               "[data] entities file")
        attrs = [f.name for f in keys.entity_attributes]
        events = events.join(entities.select(keys.entity_key, *attrs), on=keys.entity_key, how="left")
    columns = [keys.event_time, keys.entity_key, *(f.name for f in spec.model_features), spec.target.column]
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise InvalidInput(f"training data lacks column(s) {missing} that the spec of '{spec.name}' uses")
    return (events.select(columns)
            .filter(pl.col(spec.target.column).is_not_null())
            .sort(keys.event_time, maintain_order=True))


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

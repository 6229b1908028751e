"""Training sets: labelled events with their point-in-time features, split by event time."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from appliance import progress
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
        raise InvalidInput(f"model '{spec.name}' has entity attributes but its spec names no [data] entities file")
    entity = [keys.entity_key] if keys.entity_key is not None else []
    history = [*entity, keys.event_time, *sorted({a.column for a in keys.aggregations if a.column})]
    missing = [c for c in history if c not in events.columns]
    if missing:
        raise InvalidInput(f"training data lacks column(s) {missing} that the spec of '{spec.name}' uses")
    labelled = events.filter(pl.col(spec.target.column).is_not_null()).sort(keys.event_time, maintain_order=True)
    with progress.step(f"training set of {spec.name}") as phase:
        table = feature_rows(keys, events.select(history)) if entity else None
        phase.update(doing=f"joining {labelled.height:,} labelled events with their features, point in time")
        frame = point_in_time_features(keys, labelled, table, entities)
    columns = [keys.event_time, *entity, *(f.name for f in spec.model_features), spec.target.column]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"training data lacks column(s) {missing} that the spec of '{spec.name}' uses")
    return frame.select(columns)


def split_by_time(
    spec: ModelSpec, frame: pl.DataFrame, days: int | None = None, setting: str = "training.eval_days"
) -> tuple[pl.DataFrame, pl.DataFrame, datetime]:
    """Train on the days before the cutoff, evaluate on the last ``days`` whole days (default ``eval_days``)."""
    return split_at(spec, frame, eval_cutoff(spec, frame, days), setting)


def eval_cutoff(spec: ModelSpec, frame: pl.DataFrame, days: int | None = None) -> datetime:
    """Where the held-out days begin: midnight of the ``days``-th last day (default ``eval_days``)."""
    days = spec.training.eval_days if days is None else days
    last_day = frame[spec.features.event_time].max().replace(hour=0, minute=0, second=0, microsecond=0)
    return last_day - timedelta(days=days - 1)


def split_at(
    spec: ModelSpec, frame: pl.DataFrame, cutoff: datetime, setting: str = "training.eval_days"
) -> tuple[pl.DataFrame, pl.DataFrame, datetime]:
    """(rows before ``cutoff``, rows from it on, cutoff); each part must hold both classes."""
    train = frame.filter(pl.col(spec.features.event_time) < cutoff)
    evaluation = frame.filter(pl.col(spec.features.event_time) >= cutoff)
    for part, name in ((train, "training"), (evaluation, "evaluation")):
        labels = part[spec.target.column]
        if part.height == 0 or labels.n_unique() < 2:
            raise InvalidInput(
                f"the {name} split (cutoff {cutoff:%Y-%m-%d}) has {part.height} rows and needs both "
                f"classes; ingest more days or lower {setting} in the spec"
            )
    return train, evaluation, cutoff


def retrain_cutoff(spec: ModelSpec, frame: pl.DataFrame) -> datetime:
    """Where a retrain's held-out days begin: the newest ``retrain_eval_days`` days with labelled rows,
    widened a day at a time (up to ``eval_days`` days) until each class has ``retrain_min_per_class`` rows
    (a regression: until they hold that many labelled rows).

    A retrain answers drift, so it is judged on the freshest days, which show how a version does on
    today's traffic, while every older labelled day (the start of a new pattern) stays in training."""
    training = spec.training
    target = pl.col(spec.target.column)
    if spec.target.task == "regression":  # no classes: enough labelled rows
        counts = [target.is_not_null().sum().alias("_held0")]
    elif spec.target.task == "binary":  # the positive class (1, true, or [target] positive's text) and the other
        positive = target == (1 if spec.target.positive is None else spec.target.positive)
        counts = [positive.sum().alias("_held0"), (~positive).sum().alias("_held1")]
    else:  # each class the labels hold
        classes = frame[spec.target.column].drop_nulls().unique().to_list()
        counts = [(target == c).sum().alias(f"_held{i}") for i, c in enumerate(classes)]
    per_day = (
        frame.group_by(pl.col(spec.features.event_time).dt.truncate("1d").alias("day"))
        .agg(counts)
        .sort("day", descending=True)
    )
    held = pl.min_horizontal([pl.col(c.meta.output_name()).cum_sum() for c in counts])
    per_day = per_day.with_columns(enough=held >= training.retrain_min_per_class)
    days = training.retrain_eval_days
    widest = max(days, training.eval_days)
    while days < min(widest, per_day.height) and not per_day["enough"][days - 1]:
        days += 1
    return per_day["day"][min(days, per_day.height) - 1]

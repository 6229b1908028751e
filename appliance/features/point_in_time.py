"""Point in time: which stored features an event may see, and the request-time features.

The rule, one function for both sides: an event at time ``t`` sees its entity's feature row from
the entity's latest event time ``s`` with ``t - ttl <= s < t``. Strictly before ``t``: the event
being scored never sees itself, nor another event of the entity at the same instant, nor anything
after it. A row older than the TTL (``s < t - ttl``) is not used, and every aggregation is then
missing (null), exactly as for an entity with no history. Entity attributes are not time-bound.

Times are epoch microseconds in float64 arrays (exact up to year 2255), NaN meaning "none". The
serving path's single request passes plain floats instead: ``visible`` and ``derive`` take either,
one definition for both, since numpy's per-call overhead is most of the cost of one row.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from appliance.features.feature_table import FEATURE_TIME, connect, quote, window_micros
from appliance.spec import Derived, FeaturesSection


def visible(
    feature_time: np.ndarray | float, event_time: np.ndarray | float, ttl_micros: int | None
) -> np.ndarray | bool:
    """Whether each feature row may be used by the event at the same position (arrays, or one row's floats)."""
    seen = feature_time < event_time  # NaN compares False, without a warning: no history is never visible
    if ttl_micros is not None:
        seen &= feature_time >= event_time - ttl_micros
    return seen


def ttl_micros(features: FeaturesSection) -> int | None:
    """The spec's TTL in microseconds (None: history of any age is used)."""
    return window_micros(features.ttl) if features.ttl else None


def derive(
    derived: list[Derived], values: dict, event_time: np.ndarray | float, feature_time: np.ndarray | float
) -> dict:
    """The derived features, in spec order, from float64 columns (NaN: missing) of the same rows, or
    from one row's floats (then floats out).

    ``feature_time`` must already be NaN where the row is not visible.
    """
    one = isinstance(event_time, float)
    values = dict(values)
    out = {}
    for d in derived:
        if d.op == "since_last":
            result = (event_time - feature_time) / 1_000_000
        else:
            # An input the rows lack (a request value, when only stored state is asked for) is missing.
            missing = math.nan if one else np.full(len(event_time), np.nan)
            numerator, denominator = (values.get(n, missing) for n in d.of)
            result = _ratio(numerator, denominator)
        values[d.name] = out[d.name] = result
    return out


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray | float:
    # Missing where the denominator is zero or missing; the same IEEE division for a float or an array.
    if isinstance(denominator, float):
        return numerator / denominator if denominator != 0 and denominator == denominator else math.nan
    result = np.full(len(denominator), np.nan)
    np.divide(numerator, denominator, out=result, where=(denominator != 0) & ~np.isnan(denominator))
    return result


def point_in_time_features(
    features: FeaturesSection, rows: pl.DataFrame, table: pl.DataFrame | None, entities: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Each row (entity key, event time, request values) with its features as known just before its time.

    ``table`` is the feature table (``feature_table_sql``); the result keeps the rows' order. Keys are
    matched as their canonical text, so an integer key in the events matches the same id in an entity
    file that stores it as text. Without an entity (``entity_key`` None) only derived features are added.
    """
    key, t = features.entity_key, features.event_time
    if key is None:
        event_micros = _micros(rows[t])
        extra = derive(features.derived, _derived_inputs(features, rows), event_micros, np.full(rows.height, np.nan))
        return rows.with_columns(pl.Series(n, v).fill_nan(None) for n, v in extra.items())
    assert table is not None, "a model with an entity joins its feature table"
    aggregations = [a.name for a in features.aggregations]
    text_key = pl.col(key).cast(pl.String)
    con = connect()
    # Only the join keys go through DuckDB; the rows keep their own columns and types.
    con.register("entity_rows", rows.select(text_key, t).with_row_index("_row"))
    con.register("feature_rows", table.with_columns(text_key))
    picked = ", ".join(f"f.{quote(c)}" for c in [FEATURE_TIME, *aggregations])
    found = con.sql(
        f"SELECT {picked} FROM entity_rows r ASOF LEFT JOIN feature_rows f "
        f"ON r.{quote(key)} = f.{quote(key)} AND r.{quote(t)} > f.{FEATURE_TIME} ORDER BY r._row"
    ).pl()
    con.close()
    joined = rows.hstack(found)
    event_micros = _micros(joined[t])
    feature_micros = _micros(joined[FEATURE_TIME])
    seen = visible(feature_micros, event_micros, ttl_micros(features))
    feature_micros[~seen] = np.nan
    mask = pl.Series(seen)
    joined = joined.with_columns(pl.when(mask).then(pl.col(a)).alias(a) for a in aggregations)
    if features.entity_attributes:
        attributes = [f.name for f in features.entity_attributes]
        if entities is None:
            entities = pl.DataFrame({key: [], **{a: [] for a in attributes}}, schema_overrides={key: pl.String})
        joined = (
            joined.with_columns(text_key.alias(_TEXT_KEY))
            .join(
                entities.select(text_key.alias(_TEXT_KEY), *attributes), on=_TEXT_KEY, how="left", maintain_order="left"
            )
            .drop(_TEXT_KEY)
        )
    extra = derive(features.derived, _derived_inputs(features, joined), event_micros, feature_micros)
    return joined.drop(FEATURE_TIME).with_columns(pl.Series(n, v).fill_nan(None) for n, v in extra.items())


_TEXT_KEY = "_entity_text"


def _derived_inputs(features: FeaturesSection, frame: pl.DataFrame) -> dict[str, np.ndarray]:
    return {n: frame[n].cast(pl.Float64).to_numpy() for d in features.derived for n in d.of if n in frame.columns}


def _micros(times: pl.Series) -> np.ndarray:
    return times.dt.epoch("us").cast(pl.Float64).to_numpy().copy()

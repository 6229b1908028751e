"""Data quality per event-time window: schema drift, missing values, rule violations, volume.

Value rules are the data contract's FieldRule (min, max, allowed values), so the contract that
guards ingestion also guards live traffic; features the contract does not cover (entity
attributes) get allowed values from the reference's categories.
"""

from __future__ import annotations

from typing import Literal

import msgspec
import numpy as np
import polars as pl

from appliance.data.contract import FieldRule
from appliance.monitoring.windows import EventWindows, checks, empty_checks
from appliance.spec import Feature
from appliance.spec.monitoring import MonitoringSection

SCHEMA = "schema"


class SchemaChange(msgspec.Struct, frozen=True):
    field: str
    change: Literal["new", "missing", "retyped"]
    reference_type: str | None
    current_type: str | None


def type_kind(dtype: pl.DataType) -> str:
    """The kind of a column's type; Int32 and Int64 are both 'integer', so only kinds can drift."""
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    return str(dtype)


def schema_drift(reference: pl.Schema, current: pl.Schema) -> list[SchemaChange]:
    """Fields that are new, missing or of another kind than in the reference."""
    changes = [
        SchemaChange(name, "missing", type_kind(dtype), None)
        for name, dtype in reference.items()
        if name not in current
    ]
    for name, dtype in current.items():
        if name not in reference:
            changes.append(SchemaChange(name, "new", None, type_kind(dtype)))
        elif type_kind(dtype) != type_kind(reference[name]):
            changes.append(SchemaChange(name, "retyped", type_kind(reference[name]), type_kind(dtype)))
    return changes


def category_rules(reference: pl.DataFrame, features: list[Feature]) -> list[FieldRule]:
    """Allowed values for each categorical feature: the categories the reference holds."""
    return [
        FieldRule(
            f.name, "string", allowed_values=sorted(reference[f.name].drop_nulls().cast(pl.String).unique().to_list())
        )
        for f in features
        if f.type == "category"
    ]


def data_quality(
    frame: pl.DataFrame,
    windows: EventWindows,
    reference_schema: pl.Schema,
    features: list[str],
    field_rules: list[FieldRule],
    expected_rows: float,
    rules: MonitoringSection,
) -> pl.DataFrame:
    """Per window: schema changes, missing rate per feature, rule-violation rate, volume ratio."""
    rows = windows.rows()
    limits = rules.quality
    parts = [empty_checks()]
    for change in schema_drift(reference_schema, frame.schema):
        parts.append(checks(windows, change.field, f"{SCHEMA}_{change.change}", np.ones(windows.count), 0.0, rows, 1))
    for name in features:
        if name in frame.columns:
            column = frame[name]
            missing = column.is_null()
            if column.dtype.is_float():
                missing = missing | column.is_nan().fill_null(False)
            missing_rows = _count(windows, missing.to_numpy())
        else:
            missing_rows = rows.astype(np.float64)
        parts.append(
            checks(windows, name, "missing_rate", _share(missing_rows, rows), limits.max_missing_rate, rows, 1)
        )
    first_rules = {}
    for rule in field_rules:
        first_rules.setdefault(rule.name, rule)  # the contract's rule before one from the reference
    for rule in first_rules.values():
        if rule.name in frame.columns and _checks_values(rule):
            violated = frame.select(_violation(rule)).to_series().to_numpy()
            parts.append(
                checks(
                    windows,
                    rule.name,
                    "violation_rate",
                    _share(_count(windows, violated), rows),
                    limits.max_violation_rate,
                    rows,
                    1,
                )
            )
    ratio = rows / expected_rows if expected_rows > 0 else np.full(windows.count, np.nan)
    parts.append(checks(windows, "*", "volume_low", ratio, limits.min_volume_ratio, rows, 0, alert_below=True))
    parts.append(checks(windows, "*", "volume_high", ratio, limits.max_volume_ratio, rows, 0))
    return pl.concat(parts)


def expected_rows(reference: pl.DataFrame, event_time: str, every: str) -> float:
    """The reference's mean rows per window: the volume the live windows are held to."""
    counts = EventWindows(reference, event_time, every).rows()
    return float(counts.mean()) if counts.size else 0.0


def _checks_values(rule: FieldRule) -> bool:
    return rule.min is not None or rule.max is not None or rule.allowed_values is not None


def _violation(rule: FieldRule) -> pl.Expr:
    col = pl.col(rule.name)
    failed = pl.lit(False)
    if rule.min is not None:
        failed = failed | (col.cast(pl.Float64, strict=False) < rule.min)
    if rule.max is not None:
        failed = failed | (col.cast(pl.Float64, strict=False) > rule.max)
    if rule.allowed_values is not None:
        allowed = [str(v) for v in rule.allowed_values]
        failed = failed | ~col.cast(pl.String, strict=False).is_in(allowed)
    return failed.fill_null(False)


def _count(windows: EventWindows, flags: np.ndarray) -> np.ndarray:
    selected, window = windows.select(flags.astype(np.float64))
    return np.bincount(window, weights=selected, minlength=windows.count)


def _share(part: np.ndarray, rows: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return part / rows

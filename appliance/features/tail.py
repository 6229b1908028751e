"""An entity's tail: the per-time partials of its events within the longest aggregation window of
its newest one — all its online row needs to move forward by an event, with the feature table's
semantics (``feature_table``: windows ``[s - window, s]`` with both edges inclusive, partials per
distinct time, counts as integers, values as doubles).

The points live in online.db's ``tail_points`` (one row per time and column: ``col`` 0 the event
count, ``col`` i the partials of the i-th aggregated column); the aggregations over them are SQL
run by SQLite, so the prediction log's writer process spends its time outside Python.
"""

from __future__ import annotations

import polars as pl

from appliance.features.feature_table import aggregated_columns, connect, partials_sql, window_micros
from appliance.spec import Aggregation, FeaturesSection


class TailPlan:
    """How one feature definition's events become tail points, and its aggregations read them."""

    def __init__(self, features: FeaturesSection):
        self.columns = aggregated_columns(features)
        windows = [window_micros(a.window) for a in features.aggregations]
        self.horizon = max(windows, default=0)  # how far before its newest event an entity's row looks
        self.rows_sql = _rows_sql(features, self.columns, self.horizon)


def _rows_sql(features: FeaturesSection, columns: list[str], horizon: int) -> str:
    # (entity, feature_time, payload) of entity ?2 in namespace ?1, whose newest event is at ?3: the stored
    # payload with each aggregation set. One range scan of the entity's points on the primary key, in
    # (t, col) order and unsorted, so sums add in time order (the bytes match the GROUP BY join this
    # replaced); each aggregation tests its column per point, and its window only if shorter than the scan.
    values = ", ".join(f"{_aggregate(a, columns, horizon)} AS a{i}" for i, a in enumerate(features.aggregations))
    sets = "".join(f", {_json_path(a.name)}, a{i}" for i, a in enumerate(features.aggregations))
    tail = (
        f" FROM (SELECT {values} FROM tail_points WHERE namespace = ?1 AND entity = ?2 AND t >= ?3 - {horizon})"
        if values
        else ""
    )
    return (
        "SELECT ?2, ?3, json_set(coalesce(CAST((SELECT payload FROM feature_rows WHERE namespace = ?1 "
        f"AND entity = ?2) AS TEXT), '{{}}'){sets}){tail}"
    )


def _json_path(name: str) -> str:
    """The SQL literal of the JSON path to a payload key: the name in double quotes (any character but '"', which
    SQLite's paths cannot escape: the spec refuses it in an aggregation's name), the literal's quotes doubled."""
    return "'" + f'$."{name}"'.replace("'", "''") + "'"


def _aggregate(a: Aggregation, columns: list[str], horizon: int) -> str:
    col = 0 if a.column is None else columns.index(a.column) + 1
    window = window_micros(a.window)
    # The time test first: outside a short window, most points fail it and skip the column test.
    inside = f"FILTER (WHERE {f't >= ?3 - {window} AND ' if window < horizon else ''}col = {col})"
    if a.column is None or a.function == "count":
        return f"coalesce(sum(n) {inside}, 0)"
    return {
        "sum": f"sum(s) {inside}",
        "mean": f"sum(s) {inside} / nullif(sum(n) {inside}, 0)",
        "min": f"min(lo) {inside}",
        "max": f"max(hi) {inside}",
    }[a.function]


def latest_tails(features: FeaturesSection, history: pl.DataFrame) -> list[tuple]:
    """Every entity's tail points (entity, t, col, n, s, lo, hi), computed from a frame of events."""
    horizon = TailPlan(features).horizon
    parts = ["SELECT k, t, 0, n__, NULL::DOUBLE, NULL::DOUBLE, NULL::DOUBLE FROM tail"] + [
        f"SELECT k, t, {i + 1}, n_{i}, s_{i}, lo_{i}, hi_{i} FROM tail"
        for i in range(len(aggregated_columns(features)))
    ]
    sql = (
        f"WITH points AS ({partials_sql(features, 'history')}), "
        f"tail AS (SELECT k::VARCHAR AS k, epoch_us(t) AS t, * EXCLUDE (k, t, newest) FROM "
        f"(SELECT *, max(t) OVER (PARTITION BY k) AS newest FROM points) "
        f"WHERE t >= newest - INTERVAL {horizon} MICROSECONDS) " + " UNION ALL ".join(parts)
    )
    con = connect()
    con.register("history", history)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()

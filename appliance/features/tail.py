"""An entity's tail: the per-time partials of its events within the longest aggregation window of
its newest one — all its online row needs to move forward by an event, with the feature table's
semantics (``feature_table``: windows ``[s - window, s]`` with both edges inclusive, partials per
distinct time, counts as integers, values as doubles).

The points live in online.db's ``tail_points`` (one row per time and column: ``col`` 0 the event
count, ``col`` i the partials of the i-th aggregated column); the aggregations over them are SQL
run by SQLite, so a server's writer thread spends its time outside the GIL.
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
        self.rows_sql = _rows_sql(features, self.columns)

    def points(self, entity: str, t: int, values: list[float | None]) -> list[tuple]:
        """The tail points of one event (values: one per aggregated column, None when missing)."""
        return [(entity, t, 0, 1, None, None, None),
                *((entity, t, i, 0 if v is None else 1, v, v, v) for i, v in enumerate(values, 1))]


def _rows_sql(features: FeaturesSection, columns: list[str]) -> str:
    # (entity, feature_time, payload) of the entities in :newest, from their tails; the payload keeps
    # the stored attributes and sets each aggregation.
    values = ", ".join(f"{_aggregate(a, columns)} AS a{i}" for i, a in enumerate(features.aggregations))
    sets = "".join(", '$.\"" + a.name.replace('"', '\\"') + f"\"', a.a{i}" for i, a in enumerate(features.aggregations))
    return (
        "WITH newest AS (SELECT value ->> 0 AS entity, value ->> 1 AS at FROM json_each(:newest)), "
        # CROSS JOIN: SQLite keeps this order, looking up the few touched entities' points by key
        f"agg AS (SELECT n.entity, n.at{', ' + values if values else ''} FROM newest n CROSS JOIN tail_points p "
        "ON p.namespace = :namespace AND p.entity = n.entity GROUP BY n.entity, n.at) "
        f"SELECT a.entity, a.at, json_set(coalesce(CAST(f.payload AS TEXT), '{{}}'){sets}) FROM agg a "
        "LEFT JOIN feature_rows f ON f.namespace = :namespace AND f.entity = a.entity")


def _aggregate(a: Aggregation, columns: list[str]) -> str:
    col = 0 if a.column is None else columns.index(a.column) + 1
    inside = f"FILTER (WHERE p.col = {col} AND p.t >= n.at - {window_micros(a.window)})"
    if a.column is None or a.function == "count":
        return f"coalesce(sum(p.n) {inside}, 0)"
    return {
        "sum": f"sum(p.s) {inside}",
        "mean": f"sum(p.s) {inside} / nullif(sum(p.n) {inside}, 0)",
        "min": f"min(p.lo) {inside}",
        "max": f"max(p.hi) {inside}",
    }[a.function]


def latest_tails(features: FeaturesSection, history: pl.DataFrame) -> list[tuple]:
    """Every entity's tail points (entity, t, col, n, s, lo, hi), computed from a frame of events."""
    horizon = TailPlan(features).horizon
    parts = ["SELECT k, t, 0, n__, NULL::DOUBLE, NULL::DOUBLE, NULL::DOUBLE FROM tail"] + [
        f"SELECT k, t, {i + 1}, n_{i}, s_{i}, lo_{i}, hi_{i} FROM tail" for i in range(len(aggregated_columns(features)))]
    sql = (f"WITH points AS ({partials_sql(features, 'history')}), "
           f"tail AS (SELECT k::VARCHAR AS k, epoch_us(t) AS t, * EXCLUDE (k, t, newest) FROM "
           f"(SELECT *, max(t) OVER (PARTITION BY k) AS newest FROM points) "
           f"WHERE t >= newest - INTERVAL {horizon} MICROSECONDS) "
           + " UNION ALL ".join(parts))
    con = connect()
    con.register("history", history)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()

"""The feature table: each entity's windowed aggregations as of each of its events, in DuckDB.

The table has one row per entity and distinct event time ``s`` (column ``_feature_time``). For
each aggregation the row holds its value over the entity's events with event time in
``[s - window, s]``: the events at ``s`` themselves count, both window edges are inclusive.
Both sides read this one table: training sets join it point in time (``point_in_time``), and
materialization keeps each entity's latest row for the online store (``online``).
"""

from __future__ import annotations

import threading

import duckdb
import polars as pl

from appliance import progress
from appliance.spec import Aggregation, FeaturesSection
from appliance.spec.durations import parse_duration

FEATURE_TIME = "_feature_time"


def quote(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def window_micros(duration: str) -> int:
    """A spec duration ('30d') in whole microseconds, the unit event times are compared in."""
    return round(parse_duration(duration).total_seconds() * 1_000_000)


def feature_table_sql(features: FeaturesSection, history: str) -> str:
    """SQL for the feature table over the relation named ``history`` (one row per event)."""
    columns = aggregated_columns(features)
    windows = sorted({a.window for a in features.aggregations}, key=window_micros)
    named = {w: f"w{i}" for i, w in enumerate(windows)}
    selects = [f"{_aggregate(a, columns, named[a.window])} AS {quote(a.name)}" for a in features.aggregations]
    clauses = ", ".join(
        f"w{i} AS (PARTITION BY k ORDER BY t RANGE BETWEEN INTERVAL {window_micros(w)} MICROSECONDS "
        "PRECEDING AND CURRENT ROW)"
        for i, w in enumerate(windows)
    )
    key = quote(features.entity_key)
    return (
        f"WITH points AS ({partials_sql(features, history)}) "
        f"SELECT k AS {key}, t AS {FEATURE_TIME}{''.join(', ' + s for s in selects)} FROM points"
        + (f" WINDOW {clauses}" if clauses else "")
    )


def aggregated_columns(features: FeaturesSection) -> list[str]:
    """The columns aggregations read, in the order of their partials."""
    return sorted({a.column for a in features.aggregations if a.column is not None})


def partials_sql(features: FeaturesSection, history: str) -> str:
    """SQL for the partials of each distinct (entity, time) — columns ``k``, ``t``, ``n__``, then
    ``n_i, s_i, lo_i, hi_i`` per aggregated column — over the relation named ``history``."""
    key, t = quote(features.entity_key), quote(features.event_time)
    # Pre-aggregate events sharing an (entity, time): one feature row per distinct time, and
    # windows over partial sums are exact for count, sum, mean, min and max.
    partials = ["count(*) AS n__"] + [
        part
        for i, c in enumerate(aggregated_columns(features))
        for part in (
            f"count({quote(c)}) AS n_{i}",
            f"sum({quote(c)}::DOUBLE) AS s_{i}",
            f"min({quote(c)}::DOUBLE) AS lo_{i}",
            f"max({quote(c)}::DOUBLE) AS hi_{i}",
        )
    ]
    return (
        f"SELECT {key} AS k, {t} AS t, {', '.join(partials)} FROM {history} "
        f"WHERE {key} IS NOT NULL AND {t} IS NOT NULL GROUP BY ALL"
    )


def _aggregate(a: Aggregation, columns: list[str], window: str) -> str:
    if a.column is None:
        return f"CAST(sum(n__) OVER {window} AS BIGINT)"
    i = columns.index(a.column)
    return {
        "count": f"CAST(sum(n_{i}) OVER {window} AS BIGINT)",
        "sum": f"sum(s_{i}) OVER {window}",
        "mean": f"sum(s_{i}) OVER {window} / nullif(sum(n_{i}) OVER {window}, 0)",
        "min": f"min(lo_{i}) OVER {window}",
        "max": f"max(hi_{i}) OVER {window}",
    }[a.function]


def feature_rows(features: FeaturesSection, history: pl.DataFrame, latest_only: bool = False) -> pl.DataFrame:
    """The feature table computed over a frame of events; with ``latest_only``, each entity's
    latest row (the values an event after the entity's last one sees)."""
    sql = feature_table_sql(features, "history")
    if latest_only:
        sql = (
            f"SELECT * FROM ({sql}) QUALIFY row_number() OVER "
            f"(PARTITION BY {quote(features.entity_key)} ORDER BY {FEATURE_TIME} DESC) = 1"
        )
    con = connect()
    con.register("history", history)
    try:
        with progress.step("feature table", 100, "%") as built:
            return _with_progress(con, sql, built)
    finally:
        con.close()


def _with_progress(con: duckdb.DuckDBPyConnection, sql: str, built: progress.Step) -> pl.DataFrame:
    """The query's rows; meanwhile DuckDB's own estimate of how far it is (a percentage, asked from another
    thread, as its API intends) is the step's count. Its progress bar is on for the estimate, never printed."""
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    finished = threading.Event()

    def poll() -> None:
        while not finished.wait(progress.LINE_EVERY_S):
            done = con.query_progress()
            if done >= 0:  # -1: no estimate yet (DuckDB starts estimating after a while)
                built.update(int(done))

    poller = threading.Thread(target=poll, name="feature-table-progress", daemon=True)
    poller.start()
    try:
        return con.sql(sql).pl()
    finally:
        finished.set()
        poller.join()


def stored_names(features: FeaturesSection) -> list[str]:
    """The features kept per entity (online and in the feature table): attributes and aggregations."""
    return [f.name for f in features.entity_attributes] + [a.name for a in features.aggregations]


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for one feature computation."""
    return duckdb.connect(":memory:")

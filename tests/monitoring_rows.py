"""Monitoring results and distributions written into a data directory's monitoring.db through the store, shaped
as the monitor job writes them: for tests that read monitoring (the story, the dashboard's tab, the report)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from appliance.monitoring.store import DISTRIBUTION_SCHEMA, RESULT_SCHEMA, open_monitoring, write_results

RUN_AT = datetime(2026, 12, 5, 17, 3, tzinfo=UTC)  # a monitor run's moment: machine and pipeline rows carry it


def result(version: int, start: datetime, every: timedelta, check: str, feature: str, method: str, value: float,
           threshold: float | None = None, rows: int = 1000, below: bool = False) -> dict:  # fmt: skip
    """One row of monitoring.db's results, as the monitor job writes it; ``below``: it alerts under its
    threshold (a metric where higher is better)."""
    instant = check in ("machine", "pipeline")
    return {
        "version": version,
        "window_start": start,
        "window_end": start if instant else start + every,
        "check": check,
        "feature": feature,
        "method": method,
        "value": value,
        "threshold": threshold,
        "rows": rows,
        "alert": threshold is not None and (value < threshold if below else value > threshold),
        "computed_at": RUN_AT.timestamp(),
    }


def store(home: Path, model: str, rows: list[dict], distributions: list[dict] | None = None) -> None:
    """Write results (and a window's distributions) into the data directory's monitoring.db."""
    frame = pl.DataFrame([{"model": model, **r} for r in rows], schema=RESULT_SCHEMA)
    recorded = None
    if distributions:
        recorded = pl.DataFrame(
            [
                {
                    "model": model,
                    "position": i,
                    "computed_at": RUN_AT.timestamp(),
                    **{k: json.dumps(v) if k in ("labels", "reference", "current") else v for k, v in d.items()},
                }
                for i, d in enumerate(distributions)
            ],
            schema=DISTRIBUTION_SCHEMA,
        )
    conn = open_monitoring(home)
    try:
        write_results(conn, frame, recorded)
    finally:
        conn.close()

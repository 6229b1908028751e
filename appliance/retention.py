"""Retention of the prediction log: N days hot in SQLite, M days as daily Parquet, then deleted; the
distributions monitoring recorded of those days' windows go with them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from appliance.layout import Layout
from appliance.monitoring.store import open_monitoring, prune_distributions
from appliance.settings import RetentionSection
from storage.prediction_archive import PredictionArchive, drop_day, hot_days
from storage.prediction_log import PredictionStore


class RetentionReport(msgspec.Struct):
    archived_rows: int
    archived_days: list[str]
    deleted_days: list[str]
    hot_since: str  # the first day kept in predictions.db
    archive_since: str  # the first day kept in archive/predictions/
    pruned_distributions: int = 0  # recorded window distributions deleted with the days they describe


def apply_retention(home: Path, policy: RetentionSection, now: float | None = None) -> RetentionReport:
    """Move whole days older than ``hot_days`` to Parquet; delete Parquet days older than ``archive_days``, and
    the distributions monitoring recorded of windows that start before the archive's first day (the rows
    they summarise are gone; a window's results, a few numbers each, stay as its history)."""
    today = datetime.fromtimestamp(now if now is not None else time.time(), UTC).date()
    hot_since = today - timedelta(days=policy.hot_days - 1)  # today counts as one hot day
    archive_since = hot_since - timedelta(days=policy.archive_days)
    layout = Layout(home)
    archive = PredictionArchive(layout.prediction_archive)
    store = PredictionStore(layout.predictions_db)
    moved, days = 0, []
    try:
        for day in hot_days(store):
            if day >= hot_since:
                break
            if day < archive_since:
                drop_day(store, day)  # already past the archive's keep: nothing to move
            else:
                moved += archive.move_day(store, day)
                days.append(day.isoformat())
    finally:
        store.close()
    deleted = archive.delete_before(archive_since)
    conn = open_monitoring(home)
    try:
        pruned = prune_distributions(conn, datetime.combine(archive_since, datetime.min.time(), UTC))
    finally:
        conn.close()
    return RetentionReport(
        moved, days, [d.isoformat() for d in deleted], hot_since.isoformat(), archive_since.isoformat(), pruned
    )

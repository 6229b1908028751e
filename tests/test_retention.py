"""Retention of the prediction log: hot days in SQLite, daily Parquet after, deletion at the end."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from appliance.errors import InvalidInput
from appliance.layout import Layout
from appliance.retention import apply_retention
from appliance.settings import RetentionSection, load_settings
from storage.prediction_archive import PredictionArchive
from storage.prediction_log import PredictionStore

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
DAY = 86400.0
ROOT = Path(__file__).resolve().parent.parent


def _fill(home: Path, days: int = 12, per_day: int = 5) -> PredictionStore:
    """Predictions received on each of the last ``days`` days (today included), every other one labelled."""
    store = PredictionStore(Layout(home).predictions_db)
    rows = []
    for d in range(days):
        for i in range(per_day):
            received = NOW - d * DAY - i * 60
            rows.append(
                (
                    f"r{d}-{i}",
                    0,
                    "fraud",
                    1,
                    "production",
                    None,
                    received,
                    None,
                    "u1",
                    "{}",
                    0.1 * i,
                    0,
                    1.5,
                    200,
                    None,
                    None,
                )
            )
    store.append(rows)
    store.attach_feedback("fraud", [(f"r{d}-{i}", 0, float(i % 2)) for d in range(days) for i in range(0, per_day, 2)])
    return store


def test_old_days_move_to_parquet_with_their_feedback_and_the_oldest_are_deleted(tmp_path):
    store = _fill(tmp_path)
    report = apply_retention(tmp_path, RetentionSection(hot_days=3, archive_days=5), now=NOW)
    # days 0..2 stay hot; days 3..7 go to Parquet; days 8..11 are past both tiers
    assert store.count() == 3 * 5
    archived = PredictionArchive(Layout(tmp_path).prediction_archive)
    assert len(archived.days()) == 5 and report.archived_rows == 25
    frame = pl.concat([pl.read_parquet(archived.path(d)) for d in archived.days()])
    assert frame.height == 25 and frame["request_id"].n_unique() == 25
    assert frame.filter(pl.col("outcome").is_not_null()).height == 5 * 3  # feedback travelled with its rows
    assert store.conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 3 * 3
    again = apply_retention(tmp_path, RetentionSection(hot_days=3, archive_days=5), now=NOW)
    assert again.archived_rows == 0 and store.count() == 15  # idempotent


def test_a_move_interrupted_after_writing_its_file_is_completed_without_duplicates(tmp_path):
    store = _fill(tmp_path, days=5)
    archive = PredictionArchive(Layout(tmp_path).prediction_archive)
    day = datetime.fromtimestamp(NOW - 4 * DAY, UTC).date()
    archive.move_day(store, day)
    # simulate the crash: the rows come back as if the delete never happened
    _fill(tmp_path, days=5)
    archive.move_day(store, day)
    frame = pl.read_parquet(archive.path(day))
    assert frame.height == 5 and frame["request_id"].n_unique() == 5


def test_settings_come_from_the_data_directory_and_bad_ones_are_refused(tmp_path):
    assert load_settings(tmp_path).retention == RetentionSection()
    (tmp_path / "appliance.toml").write_text(
        "[retention]\nhot_days = 2\narchive_days = 30\n[cost]\nelectricity_per_kwh = 0.3\nhardware_price = 30000\n"
    )
    assert load_settings(tmp_path).retention == RetentionSection(2, 30)
    assert load_settings(tmp_path).cost.configured  # the dashboard and `appliance machine` read it from here
    (tmp_path / "appliance.toml").write_text("[retention]\nhot_days = 0\n")
    with pytest.raises(InvalidInput, match="hot_days"):
        load_settings(tmp_path)


def test_the_cli_applies_the_policy_and_shows_disk_use_per_part(home_dir):
    _fill(home_dir).close()
    (home_dir / "appliance.toml").write_text("[retention]\nhot_days = 2\narchive_days = 400\n")
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home_dir), "retention"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "archived" in result.stdout and "archive/" in result.stdout and "predictions.db" in result.stdout
    assert "metadata.db" in result.stdout and "total" in result.stdout

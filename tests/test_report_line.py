"""`appliance report MODEL` says what the file it wrote holds, in one line beside its path: the windows (first ..
last day), the alerts, the versions; on a model with results and alerts, and on one without results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from appliance.alerts.records import record_firing, resolve
from appliance.alerts.rules import Firing
from appliance.home import Home
from appliance.monitoring.store import RESULT_SCHEMA, open_monitoring, write_results
from appliance.spec.alerts import AlertRule
from tests.conftest import ok


def _drift_windows(home: Path, first: datetime, days: int) -> None:
    """``days`` daily windows of v1's drift results from ``first`` on, none alerting."""
    starts = [first + timedelta(days=d) for d in range(days)]
    constants = {"model": "fraud", "version": 1, "check": "drift", "feature": "amount", "method": "psi"}
    frame = pl.DataFrame({"window_start": starts, "window_end": [s + timedelta(days=1) for s in starts]}).with_columns(
        **{name: pl.lit(value) for name, value in constants.items()},
        value=0.05,
        threshold=0.2,
        rows=400,
        alert=False,
        computed_at=0.0,
    )
    conn = open_monitoring(home)
    try:
        write_results(conn, frame.select(list(RESULT_SCHEMA)).cast(RESULT_SCHEMA))
    finally:
        conn.close()


def test_the_report_line_names_its_windows_alerts_and_versions(home_dir: Path, tmp_path: Path):
    _drift_windows(home_dir, datetime(2026, 10, 18, tzinfo=UTC), 4)
    drift = AlertRule(name="amount_drift", check="drift", method="psi", op=">", threshold=0.2, severity="critical")
    volume = AlertRule(name="volume", check="quality", method="volume_low", op="<", threshold=0.5)
    with Home(home_dir) as home:
        record_firing(
            home.conn, "fraud", Firing(drift, "amount", 0.31, "2026-10-20T00:00:00+00:00", "2026-10-21T00:00:00+00:00")
        )
        past, _ = record_firing(
            home.conn, "fraud", Firing(volume, "*", 0.4, "2026-10-19T00:00:00+00:00", "2026-10-20T00:00:00+00:00")
        )
        resolve(home.conn, past.id, "cli")

    path = tmp_path / "fraud.html"
    line = ok(home_dir, "report", "fraud", "--out", str(path))
    assert line == (
        f"wrote {path}: 4 windows 2026-10-18 .. 2026-10-21, 2 alerts (1 unresolved), 2 versions (v1 in production)\n"
    )
    assert path.read_text().startswith("<!doctype html>")

    since = ok(home_dir, "report", "fraud", "--since", "2026-10-21", "--out", str(path))
    assert since.startswith(f"wrote {path}: 1 window 2026-10-21 .. 2026-10-21, ")


def test_a_report_without_results_says_so_and_how_to_get_them(home_dir: Path, tmp_path: Path):
    path = tmp_path / "empty.html"
    line = ok(home_dir, "report", "fraud", "--out", str(path))
    assert line == (
        f"wrote {path}: no windows yet (`appliance jobs run monitor fraud` writes them), 0 alerts (0 unresolved), "
        "2 versions (v1 in production)\n"
    )

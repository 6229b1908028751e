"""The demo's replay: live rows through the real API in event-time order, labels later, the monitor daily."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from appliance.home import Home
from appliance.layout import Layout
from appliance.replay import live_frame, replay
from appliance.training.feedback_batch import ingest_feedback


def test_replay_posts_predictions_and_labels_and_monitors_each_day(server):
    seen = []

    def monitor(root: Path, model: str, say) -> None:
        conn = sqlite3.connect(Layout(root).predictions_db)
        try:
            logged = conn.execute(
                "SELECT COUNT(*), MAX(event_time) FROM predictions WHERE model = ?", (model,)
            ).fetchone()
            labelled = conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        finally:
            conn.close()
        seen.append((model, *logged, labelled))

    days = replay(server.home, "fraud", server.url, speed=0, days=2, label_delay_hours=1, monitor=monitor)
    with Home(server.home) as home:
        live = live_frame(home, "fraud", days=2)
    per_day = live.group_by(live["event_time"].dt.date().alias("day")).len().sort("day")
    first, total = per_day["len"][0], live.height
    assert [d.day for d in days] == ["2026-10-16", "2026-10-17"]
    assert [d.predictions for d in days] == [first, total]
    # at the first boundary every prediction of the day is logged, and the labels due by midnight are in
    assert seen[0][:2] == ("fraud", first) and seen[0][2].startswith("2026-10-16T")
    assert 0 < seen[0][3] < first  # labels come an hour late: the day's last hour is not labelled yet
    assert seen[1][1] == total
    conn = sqlite3.connect(Layout(server.home).predictions_db)
    try:
        joined = conn.execute(
            "SELECT p.event_time, f.outcome FROM predictions p "
            "JOIN feedback f USING (request_id, position) ORDER BY p.event_time"
        ).fetchall()
    finally:
        conn.close()
    assert sorted((datetime.fromisoformat(t), y) for t, y in joined) == sorted(
        (t, float(y)) for t, y in live.select("event_time", "is_fraud").iter_rows()
    )

    # a retrain learns from these labelled rows: one batch through the contract, never the same row twice
    with Home(server.home) as home:
        spec = home.spec("fraud")
        report = ingest_feedback(home, spec)
        assert (report.rows_read, report.accepted) == (total, total)
        assert ingest_feedback(home, spec) is None


def test_replay_of_an_unknown_model_is_one_error_line(home_dir):
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home_dir), "replay", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and out.stderr.startswith("error: unknown model 'nope'")

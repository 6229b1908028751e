"""`replay` says when the monitoring it ran failed: every monitor run failed exits 1 with one `error:` line, some
failed one `warning:` line and exit 0. The runs fail for real: the served version's monitoring reference is gone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from appliance.layout import Layout
from appliance.monitoring.reference import ARTIFACT
from appliance.replay import _monitoring_job, replay
from tests.conftest import cli


def _lose_the_references(home: Path) -> None:
    """Forget every version's monitoring reference, as a data directory from before references were stored."""
    conn = sqlite3.connect(Layout(home).tracking_db)
    try:
        with conn:
            conn.execute("DELETE FROM artifacts WHERE name = ?", (ARTIFACT,))
    finally:
        conn.close()


def test_a_replay_whose_every_monitor_run_failed_exits_1_with_one_error_line(server):
    _lose_the_references(server.home)
    code, out, err = cli(server.home, "replay", "fraud", "--url", server.url, "--speed", "0", "--days", "2")
    assert code == 1, out + err
    assert err.count("\n") == 1 and err.startswith(
        "error: every monitor run of the replay failed (2 of 2): version 1 of 'fraud' has no monitoring reference"
    ), err
    assert "see `appliance jobs list`, fix it and run `appliance jobs run monitor fraud`" in err
    assert "Traceback" not in err + out and "replayed" not in out


def test_a_replay_where_some_monitor_runs_failed_warns_in_one_line_and_succeeds(server):
    job, runs = _monitoring_job(), []

    def monitor(root: Path, model: str, say) -> str | None:
        if runs:  # the first day is monitored; then the reference is lost
            _lose_the_references(root)
        runs.append(model)
        return job(root, model, say)

    lines: list[str] = []
    days = replay(server.home, "fraud", server.url, speed=0, days=2, monitor=monitor, say=lines.append)
    assert len(days) == 2
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [
        "warning: 1 of 2 monitor runs of the replay failed, the first: version 1 of 'fraud' has no monitoring "
        "reference (it was registered before references were stored); train a new version with `appliance train "
        "fraud`; see `appliance jobs list`, fix it and run `appliance jobs run monitor fraud`"
    ], lines

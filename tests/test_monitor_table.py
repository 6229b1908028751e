"""`appliance monitor MODEL` is a line per data window: the rows a monitor run stamps with its own time (machine,
pipeline, the serving check's log_overflow) make no line, however many runs there were; and a window with fewer
rows than `[monitoring] min_window_rows`, which is reported but never alerts, is marked so in the overview and
the drift table. Through the real monitor job, on the deliveries set (a regression, string courier keys)."""

from __future__ import annotations

from pathlib import Path

from conftest import ok

from appliance.home import Home
from appliance.monitoring import store
from appliance.monitoring.report import monitor_report
from appliance.scheduler.jobs import run_job
from tests.test_monitoring_small_windows import _lone_day


def test_runs_make_no_lines_and_small_windows_are_marked_not_judged(tmp_path: Path):
    root, live, _ = _lone_day(tmp_path)  # a day of 149 deliveries and, two days later, a day of one
    for _ in range(2):  # the scheduler's hourly runs: each stamps machine, pipeline and log_overflow rows
        assert run_job(root, "monitor", "eta").status == "succeeded"
    with Home(root) as home:
        out = store.results(home, "eta")
        least = home.spec("eta").monitoring.min_window_rows
    assert out.filter(check="serving", method="log_overflow").height == 2
    days = sorted({f"{d:%Y-%m-%d}" for d in out.filter(check="drift")["window_start"]})
    assert len(days) == 2  # the full day and the lone delivery's

    overview = ok(root, "monitor", "eta").splitlines()
    assert [line.split()[0] for line in overview[1:] if line[:1].isdigit()] == days, overview  # and no other

    assert least == 200 and live.height - 1 < least
    for check in (None, "drift"):
        lines = monitor_report(out, check, "eta", min_window_rows=least)
        rows = {line.split()[0]: line.split()[2] for line in lines[1:3]}
        assert rows == {days[0]: f"{live.height - 1}*", days[1]: "1*"}, lines
        assert (
            "(* not judged: fewer than [monitoring] min_window_rows = 200 rows, so reported but never alerts, "
            "whatever its values)"
        ) in lines
    # a window with enough rows carries no mark; without the spec's least, no window is marked
    judged = monitor_report(out, "drift", "eta", min_window_rows=100)
    assert [line.split()[2] for line in judged[1:3]] == [str(live.height - 1), "1*"]
    assert not any("*" in line for line in monitor_report(out, "drift", "eta"))

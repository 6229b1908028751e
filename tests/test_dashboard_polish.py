"""The dashboard at the sizes people run it, 80×24 and 160×50, over a real data directory: every Models action is
in the footer, Overview's columns fit, with room it shows traffic over time and the recent events, and the
rollback dialog names the version that will serve."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from test_tui import settle, text
from textual.widgets import DataTable
from textual.widgets._footer import FooterKey

from appliance.alerts.records import record_firing
from appliance.alerts.rules import Firing
from appliance.deployment import deployments
from appliance.home import Home
from appliance.monitoring.store import RESULT_SCHEMA, open_monitoring, write_results
from appliance.spec.alerts import AlertRule
from tui.app import Dashboard
from tui.charts import DatedChart
from tui.overview import COLUMNS

SMALL, LARGE = (80, 24), (160, 50)


def run(home: Path, size: tuple[int, int], steps) -> Dashboard:
    app = Dashboard(home, refresh_seconds=0)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await steps(pilot)
            await settle(pilot)

    asyncio.run(main())
    return app


def footer(app: Dashboard) -> dict[str, FooterKey]:
    return {k.description: k for k in app.screen.query(FooterKey)}


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_every_models_action_is_in_the_footer_clear_of_the_palette_key(home_dir: Path, size) -> None:
    async def steps(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        keys = footer(pilot.app)
        palette = keys["palette"].region
        for action in ("Promote", "Rollback", "Deploy", "Advance", "Abort"):
            shown = keys[action].region
            assert shown.right <= min(palette.x, size[0]), (action, shown, palette)

    run(home_dir, size, steps)


def test_deploy_asks_which_strategy_then_confirms(home_dir: Path) -> None:
    async def steps(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert "Deploy fraud v2 next to production v1 how?" in text(pilot.app, "#title")
        await pilot.press("c")  # canary
        await settle(pilot)
        assert "Start a canary deployment of fraud v2" in text(pilot.app, "#title")
        await pilot.press("y")

    run(home_dir, SMALL, steps)
    with Home(home_dir) as h:
        d = deployments.current(h, "fraud")
    assert (d.strategy, d.candidate_version) == ("canary", 2)

    async def cancelled(pilot) -> None:
        await pilot.press("2", "d")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert pilot.app.screen.id != "choose" and not pilot.app.screen.is_modal

    run(home_dir, SMALL, cancelled)


def test_overview_columns_all_fit_at_80_and_every_column_shows_at_160(home_dir: Path) -> None:
    with Home(home_dir) as h:
        d = deployments.start(h, "fraud", "canary", 2)  # the widest deployment cell
    share = f"canary v2: {d.traffic_percent:g} %"

    seen: dict[tuple[int, int], tuple[list[str], int, int, str]] = {}

    def look(size):
        async def steps(pilot) -> None:
            table = pilot.app.screen.query_one("#overview-table", DataTable)
            labels = [str(c.label) for c in table.columns.values()]
            seen[size] = (labels, table.virtual_size.width, table.size.width, text(pilot.app, "#overview-table"))

        return steps

    for size in (SMALL, LARGE):
        run(home_dir, size, look(size))
    labels, needed, width, row = seen[SMALL]
    assert needed <= width, (needed, width)  # nothing cut, no horizontal scrolling
    assert labels == list(COLUMNS[:9]) and share in row and "/" not in row, row  # the monitor runs: on Jobs
    labels, needed, width, row = seen[LARGE]
    assert labels == list(COLUMNS) and needed <= width
    assert f"{share} / {100 - d.traffic_percent:g} %" in row, row


def _traffic(home: Path, model: str, version: int, days: list[datetime], requests: list[int]) -> None:
    """The monitor job's serving rows for daily data windows: requests and p99 latency per window."""
    frame = pl.DataFrame(
        [
            {
                "model": model,
                "version": version,
                "window_start": day,
                "window_end": day + timedelta(days=1),
                "check": "serving",
                "feature": "*",
                "method": method,
                "value": value,
                "threshold": None,
                "rows": n,
                "alert": False,
                "computed_at": days[-1].timestamp(),
            }
            for day, n in zip(days, requests)
            for method, value in (("requests", float(n)), ("latency_p99_ms", 2.0 + n / 100))
        ],
        schema=RESULT_SCHEMA,
    )
    conn = open_monitoring(home)
    try:
        write_results(conn, frame)
    finally:
        conn.close()


def test_overview_at_160_shows_traffic_over_time_and_events_newest_first(home_dir: Path) -> None:
    days = [datetime(2026, 10, 10, tzinfo=UTC) + timedelta(days=i) for i in range(6)]
    _traffic(home_dir, "fraud", 1, days, [120, 340, 560, 410, 90, 700])
    later = [day + timedelta(days=10) for day in days]
    _traffic(home_dir, "fraud", 2, later, [1, 1, 1, 1, 1, 1])  # the candidate's windows: not production's
    with Home(home_dir) as h:
        h.registry.promote("fraud", 2, reason="better")
        h.registry.rollback("fraud", reason="worse on the canary")
        rule = AlertRule(name="amount-drift", check="drift", method="psi", op=">", threshold=0.2, severity="critical")
        record_firing(h.conn, "fraud", Firing(rule, "amount", 0.5, "2026-10-15", "2026-10-16"))

    charts: dict[str, tuple[list[datetime], list[str]]] = {}
    events: list[str] = []

    async def steps(pilot) -> None:
        for name in ("overview-requests", "overview-latency"):
            chart = pilot.app.screen.query_one(f"#{name}", DatedChart)
            charts[name] = (chart.windows, chart.dates())
        events.extend(text(pilot.app, "#overview-events").splitlines())
        assert pilot.app.screen.query_one("#overview-history").region.height >= 20

    run(home_dir, LARGE, steps)
    for windows, dates in charts.values():  # production's windows (v1's), every date on the axis at this width
        assert windows == days and dates == ["10-10", "10-11", "10-12", "10-13", "10-14", "10-15"], dates
    assert "critical amount-drift" in events[0], events  # the newest: the alert, then the rollback, the promotion
    assert "rolled back to v1 (from v2)" in events[1] and "v2 in production (was v1)" in events[2], events
    assert any(" train " in e and "succeeded" in e for e in events), events  # the fixture's training runs

    async def small(pilot) -> None:  # at 80×24 no room: the table alone, its history not even gathered
        assert not pilot.app.screen.query_one("#overview-history").display
        assert pilot.app.screen.query_one("#overview-requests", DatedChart).windows == []

    run(home_dir, SMALL, small)


def test_the_rollback_dialog_names_the_version_that_will_serve(home_dir: Path) -> None:
    with Home(home_dir) as h:
        h.registry.promote("fraud", 2)

    async def steps(pilot) -> None:
        await pilot.press("2", "r")
        await settle(pilot)
        assert text(pilot.app, "#title") == "Roll fraud back? v1 will serve in place of v2."
        assert text(pilot.app, "#body").startswith("fraud v1 ")  # the case of the version that will serve
        await pilot.press("y")

    run(home_dir, SMALL, steps)
    with Home(home_dir) as h:
        assert h.registry.alias("fraud", "production") == 1

    async def nothing_before(pilot) -> None:  # v1 was the first: the dialog says so, the registry refuses
        await pilot.press("2", "r")
        await settle(pilot)
        assert "No version served before it" in text(pilot.app, "#title")
        await pilot.press("y")
        await settle(pilot)
        assert any("no earlier production version" in str(n.message) for n in pilot.app._notifications)

    run(home_dir, SMALL, nothing_before)

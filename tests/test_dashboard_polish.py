"""The dashboard at the sizes people run it, 80×24 and 160×50, over a real data directory: every Models action is
in the footer, Overview's columns fit, with room it shows traffic over time and the recent events, and the
rollback dialog names the version that will serve."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from test_tui import settle, text
from textual.app import App
from textual.widgets import DataTable
from textual.widgets._footer import FooterKey

from appliance.alerts.records import record_firing
from appliance.alerts.rules import Firing
from appliance.deployment import deployments
from appliance.home import Home
from appliance.monitoring.store import RESULT_SCHEMA, open_monitoring, write_results
from appliance.spec.alerts import AlertRule
from tui.app import Dashboard
from tui.charts import DatedChart, Line, round_ticks, tick_labels
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
def test_every_models_key_and_the_apps_are_in_the_footer_clear_of_the_palette_key(home_dir: Path, size) -> None:
    async def steps(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        keys = footer(pilot.app)
        palette = keys["palette"].region
        for action in ("Promote", "Rollback", "Deployment", "Quit", "Refresh", "Log"):
            shown = keys[action].region
            assert shown.right <= min(palette.x, size[0]), (action, shown, palette)
        commands = [c.title for c in pilot.app.get_system_commands(pilot.app.screen)]
        assert "Advance the running deployment" in commands and "Abort the running deployment" in commands

    run(home_dir, size, steps)


def test_the_deployment_key_offers_advance_or_abort_while_one_runs(home_dir: Path) -> None:
    with Home(home_dir) as h:
        deployments.start(h, "fraud", "canary", 2)

    async def steps(pilot) -> None:
        await pilot.press("2", "d")
        await settle(pilot)
        assert "canary deployment of fraud v2 serves" in text(pilot.app, "#title")
        assert "advance it or abort it?" in text(pilot.app, "#title")
        await pilot.press("a")
        await settle(pilot)
        assert text(pilot.app, "#title").startswith("Abort the canary deployment of fraud v2")
        await pilot.press("y")

    run(home_dir, SMALL, steps)
    with Home(home_dir) as h:
        assert deployments.current(h, "fraud") is None and deployments.latest(h, "fraud").status == "aborted"


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


def test_deploy_on_the_production_version_says_why_and_opens_no_dialog(home_dir: Path) -> None:
    with Home(home_dir) as h:  # the newest version serves: there is none to deploy next to it
        h.registry.promote("fraud", 2, actor="test", reason="the newest serves")

    async def steps(pilot) -> None:
        await pilot.press("2", "d")
        await settle(pilot)
        assert not pilot.app.screen.is_modal

    run(home_dir, SMALL, steps)


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
    _traffic(home_dir, "fraud", 2, days, [1, 1, 1, 1, 1, 1])  # a canary's few rows in the days v1 served: v1's story
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


def test_every_table_fits_80_columns_keeping_the_columns_that_identify_a_row(home_dir: Path) -> None:
    """Generated text longer than any sample's (a 60-character feature, a long rule name) is cut on screen with
    "…" to the room the other columns leave; the cell keeps it whole. With room, every column shows."""
    feature = "merchant_category_code_of_the_acquiring_bank_" + "x" * 15
    rule = AlertRule(
        name="category-drift-on-weekends", check="drift", method="psi", op=">", threshold=0.2, severity="warning"
    )
    with Home(home_dir) as h:
        record_firing(h.conn, "fraud", Firing(rule, feature, 0.5, "2026-10-15", "2026-10-16"))
    kept = {
        "versions": ["MODEL", "VERSION", "STATUS", "ALIAS", "METRIC", "REGISTERED"],
        "alerts-table": ["ID", "SEVERITY", "MODEL", "RULE", "STATUS", "FIRST SEEN", "MESSAGE"],
        "runs-table": [" ", "RUN", "MODEL", "NAME", "STATUS", "STARTED", "SECONDS"],
    }
    seen: dict[tuple[int, int], dict[str, tuple[list[str], int, int, str, str]]] = {SMALL: {}, LARGE: {}}

    def look(size):
        async def steps(pilot) -> None:
            for key, table_id in (("2", "versions"), ("4", "alerts-table"), ("5", "runs-table")):
                await pilot.press(key)
                await settle(pilot)
                table = pilot.app.screen.query_one(f"#{table_id}", DataTable)
                labels = [str(c.label) for c in table.columns.values()]
                drawn = "\n".join(table.render_line(y).text for y in range(table.row_count + 1))
                cells = text(pilot.app, f"#{table_id}")
                seen[size][table_id] = (labels, table.virtual_size.width, table.size.width, drawn, cells)

        return steps

    for size in (SMALL, LARGE):
        run(home_dir, size, look(size))
    for table_id, (labels, needed, width, _, _) in seen[SMALL].items():
        assert needed <= width, (table_id, needed, width)  # nothing off the right edge, no sideways scrolling
        assert set(kept[table_id]) <= set(labels), labels  # the rest only where they fit, as Runs' here do
    labels, _, _, drawn, cells = seen[SMALL]["alerts-table"]
    assert labels == kept["alerts-table"] and seen[SMALL]["versions"][0] == kept["versions"]
    assert feature in cells and feature not in drawn and "…" in drawn  # cut on screen, whole in the cell
    assert "2026-" not in drawn.splitlines()[1]  # the date without its year where it is narrow
    for table_id, (labels, needed, width, _, _) in seen[LARGE].items():
        assert needed <= width and set(kept[table_id]) <= set(labels), (table_id, labels)
    assert "DATA" in seen[LARGE]["versions"][0] and "KIND" in seen[LARGE]["runs-table"][0]


@pytest.mark.parametrize("seed", range(5))
def test_y_ticks_are_few_round_and_evenly_spaced_over_any_range(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        scale = 10 ** rng.uniform(-4, 5)
        low = rng.uniform(-1, 1) * scale
        high = low + rng.choice([0.0, rng.uniform(0, 1) * scale])
        most = rng.randint(3, 6)
        ticks = round_ticks(low, high, most)
        step = ticks[1] - ticks[0]
        assert 2 <= len(ticks) <= most, (low, high, most, ticks)
        assert all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in itertools.pairwise(ticks)), ticks
        assert ticks[0] <= low and ticks[-1] >= high, (low, high, ticks)
        assert float(f"{step:.3e}".split("e")[0]) in {1, 2, 2.5, 5}, (low, high, ticks)
        labels = tick_labels(ticks)
        assert len(set(labels)) == len(labels), labels


def test_a_charts_legend_is_above_its_plot_and_its_threshold_dashed() -> None:
    class One(App):
        def compose(self):
            yield DatedChart(id="chart")

    days = [datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=i) for i in range(8)]
    drawn: list[str] = []

    async def main() -> None:
        app = One()
        async with app.run_test(size=(80, 16)) as pilot:
            chart = app.query_one(DatedChart)
            chart.draw(
                "Score per segment",
                days,
                [
                    Line("segment_a", [0.31, 0.32, 0.35, 0.4, 0.9, 1.4, 1.6, 1.61]),
                    Line("segment_b", [0.30, 0.33, 0.34, 0.41, 0.88, 1.38, 1.62, 1.6]),
                    Line("threshold", [1.0] * len(days), "red", dashed=True),
                ],
            )
            await pilot.pause()
            drawn.extend(chart.render().plain.splitlines())

    asyncio.run(main())
    assert drawn[0].strip() == "Score per segment"
    assert all(label in drawn[1] for label in ("segment_a", "segment_b", "threshold")), drawn[1]
    plot = drawn[2:]
    assert not any(label in row for row in plot for label in ("segment", "threshold")), plot  # nothing over it
    assert any("┄" in row for row in plot)
    y = [row.split("┤")[0].strip() for row in plot if "┤" in row]
    assert y == ["2.0", "1.5", "1.0", "0.5", "0.0"], y  # round, one step apart

"""The Monitoring tab under Textual's pilot, over a real data directory whose monitoring.db holds results and
distributions as the monitor job writes them: the drift view's columns are data windows, statistics share one
scale, charts have dated axes, a feature's distributions are paired, each task shows its own metric."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitoring_rows import RUN_AT, result, store
from task_data import write_deliveries
from test_tui import settle, text

from appliance.home import Home
from appliance.spec import load_spec
from tui.app import Dashboard
from tui.charts import DatedChart
from tui.monitoring import NO_DISTRIBUTION, NO_RESULTS

DAY = timedelta(days=1)
FRAUD_START = datetime(2026, 10, 10, tzinfo=UTC)


def fraud_results(home: Path, windows: int = 12) -> list[datetime]:
    """Daily windows of the served v1: amount drifts on the last three days (KS, a small threshold), hour has a
    PSI of 5.5 on a 53-row window against the large threshold chance sets there; a candidate's rows, a monitor
    run's machine and pipeline rows beside them. Returns the windows."""
    starts = [FRAUD_START + i * DAY for i in range(windows)]
    rows = []
    for i, w in enumerate(starts):
        late = i >= windows - 3
        rows += [
            result(1, w, DAY, "drift", "amount", "ks", 0.3 if late else 0.02, 0.1),
            result(1, w, DAY, "drift", "amount", "psi", 0.9 if late else 0.01, 0.2),
            result(1, w, DAY, "drift", "hour", "psi", 5.5 if i == windows - 1 else 0.4, 8.0, rows=53),
            result(1, w, DAY, "drift", "amount", "mean_delay_minutes", 3.0),  # a value, no statistic
            result(1, w, DAY, "drift", "prediction", "psi", 0.05, 0.1),
            result(1, w, DAY, "performance", "*", "auc", 0.9 - 0.1 * late, 0.8, below=True),
            result(1, w, DAY, "performance", "country=DE", "auc", 0.7, 0.8, below=True),
            result(1, w, DAY, "estimated", "*", "auc", 0.88, 0.8, below=True),
            result(1, w, DAY, "estimated", "*", "auc_lower", 0.84),
            result(1, w, DAY, "estimated", "*", "auc_upper", 0.92),
            result(1, w, DAY, "serving", "*", "requests", 1000.0 + 10 * i),
            result(1, w, DAY, "serving", "*", "latency_p50_ms", 2.0),
            result(1, w, DAY, "serving", "*", "latency_p99_ms", 9.0),
            result(1, w, DAY, "quality", "amount", "missing_rate", 0.3 if late else 0.0, 0.1),
        ]
    rows += [
        # a canary's few rows in the newest window: v1 served it, so the window stays v1's
        result(2, starts[-1], DAY, "drift", "amount", "ks", 0.01, 0.1, rows=60),
        result(1, RUN_AT, DAY, "machine", "host", "cpu_percent", 40.0),
        result(1, RUN_AT, DAY, "pipeline", "*", "failed_runs", 0.0),
    ]
    newest = starts[-1]
    store(
        home,
        "fraud",
        rows,
        [
            {
                "version": 1,
                "window_start": newest,
                "feature": "amount",
                "kind": "numeric",
                "labels": ["[0, 12.5)", "[12.5, 80)", "≥ 80"],
                "reference": [0.3, 0.6, 0.1],
                "current": [0.1, 0.3, 0.6],
                "reference_rows": 40_000,
                "current_rows": 1_000,
            },
            {
                "version": 1,
                "window_start": newest,
                "feature": "merchant_category",
                "kind": "categorical",
                "labels": ["grocery", "jewelry", "(other)", "(missing)"],
                "reference": [0.7, 0.1, 0.15, 0.05],
                "current": [0.5, 0.3, 0.15, 0.05],
                "reference_rows": 40_000,
                "current_rows": 1_000,
            },
        ],
    )
    return starts


def run(home: Path, steps, size: tuple[int, int] = (80, 24)) -> None:
    """The dashboard headless at ``size`` on its Monitoring tab; ``steps(pilot)`` reads and drives it."""
    app = Dashboard(home, refresh_seconds=0)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await pilot.press("3")
            await settle(pilot)
            await steps(pilot)
            await settle(pilot)

    asyncio.run(main())


def columns(pilot) -> list[str]:
    return [str(c.label) for c in pilot.app.query_one("#drift-table").columns.values()]


def rendered(pilot, selector: str) -> str:
    """A plot as it is drawn at its size."""
    return pilot.app.query_one(selector).render().plain


def test_drift_view_is_data_windows_by_features_of_the_served_version(home_dir: Path) -> None:
    windows = fraud_results(home_dir)
    dates = [f"{w:%m-%d}" for w in windows]

    async def narrow(pilot) -> None:
        assert "fraud: serving v1 (results for v1, v2); 12 data windows, 10-10 … 10-21" in text(
            pilot.app, "#monitoring-model"
        )
        shown = columns(pilot)
        assert shown[:2] == ["FEATURE", "METHOD"]
        assert 3 <= len(shown) - 2 < len(dates) and shown[2:] == dates[-(len(shown) - 2) :]  # the newest that fit
        rows = [" ".join(line.split()) for line in text(pilot.app, "#drift-table").splitlines()]
        assert [r.split()[:2] for r in rows] == [
            ["amount", "ks"],
            ["amount", "psi"],
            ["hour", "psi"],
            ["prediction", "psi"],
        ]
        table = pilot.app.query_one("#drift-table")
        assert rows[0].endswith("0.300 0.300 0.300") and rows[2].endswith("5.500")  # the raw values
        # one scale: KS 0.3 against 0.1 alarms; PSI 5.5 on 53 rows against the 8.0 chance sets there does not
        assert str(table.get_row_at(0)[-1].style) == "bold white on red"
        assert str(table.get_row_at(2)[-1].style) == "black on yellow"
        assert str(table.get_row_at(2)[-2].style) == "black on green"

    run(home_dir, narrow)

    async def wide(pilot) -> None:
        assert columns(pilot)[2:] == dates  # every window fits; the run's date (12-05) is never a column

    run(home_dir, wide, size=(160, 50))


def test_charts_have_dated_axes_and_the_threshold(home_dir: Path) -> None:
    windows = fraud_results(home_dir)
    dates = [f"{w:%m-%d}" for w in windows]

    async def steps(pilot) -> None:
        for chart in ("#drift-chart", "#performance-chart", "#traffic-chart", "#latency-chart"):
            ticks = pilot.app.query_one(chart, DatedChart).dates()
            assert len(ticks) >= 2 and set(ticks) <= set(dates) and ticks[-1] == "10-21", (chart, ticks)
            drawn = rendered(pilot, chart)
            assert all(tick in drawn for tick in ticks) and "12-05" not in drawn
        drift = rendered(pilot, "#drift-chart")
        assert "threshold" in drift and "amount" in drift and "hour" in drift
        performance = rendered(pilot, "#performance-chart")
        assert "AUC" in performance and "higher is better" in performance
        assert all(label in performance for label in ("realized", "estimated", "band lower", "band upper"))
        assert "requests" in rendered(pilot, "#traffic-chart")
        assert "p50" in rendered(pilot, "#latency-chart") and "p99" in rendered(pilot, "#latency-chart")
        assert text(pilot.app, "#segments") == "country=DE auc 0.7000 0.8000 1000 ALERT"
        assert text(pilot.app, "#quality").splitlines()[0] == "2026-10-21 00:00 amount missing_rate 0.3000 0.1000 1000"

    run(home_dir, steps, size=(160, 50))


def test_distribution_view_pairs_reference_and_current(home_dir: Path) -> None:
    fraud_results(home_dir)

    async def steps(pilot) -> None:
        title = text(pilot.app, "#distribution-title")
        assert "amount" in title and "2026-10-21" in title and "1,000 rows" in title and "40,000" in title
        bars = [" ".join(line.split()) for line in text(pilot.app, "#distribution").splitlines()]
        assert [b.split("█")[0].strip() for b in bars] == [
            "[0, 12.5) reference",
            "current",
            "[12.5, 80) reference",
            "current",
            "≥ 80 reference",
            "current",
        ]
        assert [b.split()[-2] for b in bars] == ["30.0", "10.0", "60.0", "30.0", "10.0", "60.0"]  # % of rows
        assert abs(bars[2].count("█") - 2 * bars[0].count("█")) <= 1  # one scale: 60 % is twice as long as 30 %
        await pilot.press("f")
        await settle(pilot)
        assert "merchant_category" in text(pilot.app, "#distribution-title")
        assert "jewelry" in text(pilot.app, "#distribution")
        table = pilot.app.query_one("#drift-table")
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")  # the amount row: back to amount's distribution
        await settle(pilot)
        assert "amount" in text(pilot.app, "#distribution-title")
        table.move_cursor(row=3)
        await pilot.press("enter")  # the prediction: nothing recorded for it
        await settle(pilot)
        assert NO_DISTRIBUTION in text(pilot.app, "#distribution-empty")

    run(home_dir, steps, size=(160, 50))


def test_a_regression_model_shows_its_metric_and_a_model_without_results_says_so(
    home_dir: Path, tmp_path: Path
) -> None:
    spec = load_spec(write_deliveries(tmp_path / "eta"))
    with Home(home_dir) as h:
        h.add_model(spec)
    every = timedelta(hours=6)
    start = datetime(2026, 5, 18, tzinfo=UTC)
    starts = [start + i * every for i in range(6)]
    store(
        home_dir,
        "eta",
        [
            r
            for i, w in enumerate(starts)
            for r in (
                result(1, w, every, "drift", "distance_km", "jensen_shannon", 0.01 * i, 0.05, rows=80),
                result(1, w, every, "performance", "*", "rmse", 4.0 + i, 6.0, rows=80),
                result(1, w, every, "estimated", "*", "rmse", 4.5, 6.0, rows=80),
            )
        ],
    )

    async def steps(pilot) -> None:
        assert "eta: no version serves: v1, the newest with results" in text(pilot.app, "#monitoring-model")
        assert columns(pilot)[-1] == "05-19 06:00"  # six-hour windows read with their hour
        performance = rendered(pilot, "#performance-chart")
        assert "RMSE" in performance and "lower is better" in performance
        assert NO_DISTRIBUTION in text(pilot.app, "#distribution-empty")
        assert not pilot.app.query_one("#distribution").display
        await pilot.press("m")
        await settle(pilot)
        assert f"fraud: {NO_RESULTS}   (m: next of 2 models)" == text(pilot.app, "#monitoring-empty")
        assert not pilot.app.query_one("#monitoring-body").display

    run(home_dir, steps, size=(160, 50))

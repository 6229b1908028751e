"""The dashboard under Textual's pilot: every action through the UI, each screen with fixed data."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import types
import warnings
from pathlib import Path

import pytest
from fake_nvml import H100, T4, FakeNvml
from textual.worker import WorkerCancelled

from appliance.alerts import records as alert_records
from appliance.alerts.records import record_firing
from appliance.alerts.rules import Firing
from appliance.deployment import deployments
from appliance.home import Home
from appliance.machine.cost import CostSection
from appliance.machine.gpus import GpuProbe
from appliance.scheduler import jobs as scheduled
from appliance.serving.traffic import recent_traffic
from appliance.spec.alerts import AlertRule
from storage.prediction_log import PredictionStore
from tui.app import TABS, Dashboard
from tui.log_pane import LogFeed, LogPane, logging_into
from tui.monitoring import NO_RESULTS

SIZE = (80, 24)


def text(app: Dashboard, selector: str) -> str:
    """What a widget shows: a Static's content, or a DataTable's cells."""
    widget = app.screen.query_one(selector)
    if hasattr(widget, "get_row_at"):
        return "\n".join(" ".join(str(c) for c in widget.get_row_at(i)) for i in range(widget.row_count))
    return str(widget.content)


def drive(home: Path, steps, **kwargs) -> Dashboard:
    """Run the dashboard headless at 80×24, let ``steps(pilot)`` drive it, and return the app."""
    app = Dashboard(home, refresh_seconds=0, **kwargs)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await steps(pilot)
            await settle(pilot)  # an action's reload may still be running: let it end before the app closes

    asyncio.run(main())
    return app


async def settle(pilot) -> None:
    """Wait until no worker is left (an action's reload starts new ones); a cancelled gather is fine."""
    for _ in range(50):
        workers = list(pilot.app.workers)
        if not workers:
            break
        for worker in workers:
            try:
                await worker.wait()
            except WorkerCancelled:
                pass
        await pilot.pause()
    await pilot.pause()


def production(home: Path) -> int | None:
    with Home(home) as h:
        return h.registry.alias("fraud", "production")


async def open_models(pilot, confirm_key: str, action_key: str) -> None:
    await pilot.press("2")
    await settle(pilot)
    await pilot.press(action_key)
    await settle(pilot)
    assert "gate report" in text(pilot.app, "#body")  # the confirmation shows the evidence
    await pilot.press(confirm_key)
    await settle(pilot)


def test_overview_shows_models_and_says_what_is_missing(home_dir: Path) -> None:
    async def steps(pilot) -> None:
        rows = text(pilot.app, "#overview-table")
        assert rows.startswith("fraud v1 v2 none 0.0")
        assert "no predictions in the last minute" in text(pilot.app, "#overview-note")

    drive(home_dir, steps)


def test_promote_moves_the_alias_and_cancel_changes_nothing(home_dir: Path) -> None:
    async def cancel(pilot) -> None:
        await open_models(pilot, "n", "p")
        assert "prod" in text(pilot.app, "#version-detail")  # metrics against production

    drive(home_dir, cancel)
    assert production(home_dir) == 1

    async def confirm(pilot) -> None:
        await open_models(pilot, "y", "p")
        assert "production" in text(pilot.app, "#versions").splitlines()[0]  # v2, newest first, now production

    drive(home_dir, confirm)
    assert production(home_dir) == 2
    with Home(home_dir) as h:
        entry = h.registry.audit_log("fraud", limit=1)[0]
    assert (entry.action, entry.actor, entry.version) == ("promote", "tui", 2)


def test_rollback_from_the_dashboard(home_dir: Path) -> None:
    with Home(home_dir) as h:
        h.registry.promote("fraud", 2)

    async def steps(pilot) -> None:
        await open_models(pilot, "y", "r")

    drive(home_dir, steps)
    assert production(home_dir) == 1


def test_start_and_abort_a_canary(home_dir: Path) -> None:
    async def start(pilot) -> None:
        await open_models(pilot, "y", "c")

    drive(home_dir, start)
    with Home(home_dir) as h:
        d = deployments.current(h, "fraud")
    assert (d.strategy, d.candidate_version, d.baseline_version) == ("canary", 2, 1)

    async def abort(pilot) -> None:
        await pilot.press("1")
        await settle(pilot)
        assert f"canary v2: {d.traffic_percent:g} %" in text(pilot.app, "#overview-table")
        await open_models(pilot, "y", "a")

    drive(home_dir, abort)
    with Home(home_dir) as h:
        assert deployments.current(h, "fraud") is None
        assert deployments.latest(h, "fraud").status == "aborted"
    assert production(home_dir) == 1


def test_a_failed_action_says_why_and_changes_nothing(home_dir: Path) -> None:
    async def steps(pilot) -> None:
        await open_models(pilot, "y", "r")  # v1 is the first production version: nothing to roll back to
        messages = [n.message for n in pilot.app._notifications]
        assert any("no earlier production version" in m for m in messages)

    drive(home_dir, steps)
    assert production(home_dir) == 1


def test_empty_states(home_dir: Path) -> None:
    async def steps(pilot) -> None:
        for key, selector, words in (("3", "#monitoring-empty", NO_RESULTS), ("4", "#alerts-empty", "no open alerts")):
            await pilot.press(key)
            await settle(pilot)
            assert words in text(pilot.app, selector)

    drive(home_dir, steps)


def test_every_tab_is_reached_by_its_key_from_every_other_tab(home_dir: Path) -> None:
    """A tab without a table of its own (GPU & cost, an empty Alerts) once kept the last table's focus, and
    TabbedContent switched back to that table's tab: key 6 did nothing from four tabs."""
    reached = []

    async def steps(pilot) -> None:
        for i, (start, _, _) in enumerate(TABS, 1):
            for j, (target, _, _) in enumerate(TABS, 1):
                await pilot.press(str(i))
                await settle(pilot)
                await pilot.press(str(j))
                await settle(pilot)
                reached.append((start, target, pilot.app.query_one("#tabs").active))

    drive(home_dir, steps)
    assert [(start, target) for start, target, active in reached if active != target] == []


def test_the_log_pane_shows_lines_from_any_thread_and_those_said_before_it_opened(home_dir: Path) -> None:
    feed = LogFeed()
    feed.say("demo: replaying the live data")  # before the dashboard exists, as the demo does

    async def steps(pilot) -> None:
        worker = threading.Thread(target=lambda: logging.getLogger("appliance.test").warning("from a thread"))
        with logging_into(feed):
            worker.start()
            worker.join()
            warnings.warn("a library's warning", UserWarning, stacklevel=1)
        await settle(pilot)
        pane = pilot.app.query_one(LogPane)
        lines = "\n".join(pane.lines)
        assert "demo: replaying the live data" in lines
        assert "WARNING appliance.test: from a thread" in lines
        assert "a library's warning" in lines
        await pilot.press("l")
        assert not pane.display
        await pilot.press("l")
        assert pane.display

    app = drive(home_dir, steps, feed=feed, api_url="http://127.0.0.1:8123")
    assert app.sub_title.startswith("API http://127.0.0.1:8123")


def _open_alerts(home: Path) -> None:
    rule = AlertRule(name="amount_drift", check="drift", method="psi", op=">", threshold=0.2, severity="critical")
    volume = AlertRule(name="volume", check="quality", method="volume_low", op="<", threshold=0.5)
    with Home(home) as h:
        record_firing(h.conn, "fraud", Firing(rule, "amount", 0.31, None, None))
        past, _ = record_firing(h.conn, "fraud", Firing(volume, "*", 0.4, None, None))
        alert_records.resolve(h.conn, past.id, "cli")


def test_alerts_acknowledge_resolve_and_past(home_dir: Path) -> None:
    _open_alerts(home_dir)

    async def steps(pilot) -> None:
        assert text(pilot.app, "#overview-table").split()[8] == "1"  # one open alert on the overview
        await pilot.press("4")
        await settle(pilot)
        assert text(pilot.app, "#alerts-table").startswith("1 critical fraud amount_drift open")
        assert "psi of amount = 0.31" in text(pilot.app, "#alert-detail")
        await pilot.press("k")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert "no open alerts" in text(pilot.app, "#alerts-empty")
        await pilot.press("h")
        await settle(pilot)
        assert len(text(pilot.app, "#alerts-table").splitlines()) == 2

    drive(home_dir, steps)
    with Home(home_dir) as h:
        a = alert_records.alert(h.conn, 1)
    assert (a.status, a.acknowledged_by, a.resolved_by) == ("resolved", "tui", "tui")


def test_jobs_list_and_run_now(home_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = []
    monkeypatch.setattr(
        scheduled,
        "run_job",
        lambda root, job, model: ran.append((Path(root), job, model)) or types.SimpleNamespace(status="succeeded"),
    )

    async def steps(pilot) -> None:
        await pilot.press("7")
        await settle(pilot)
        rows = text(pilot.app, "#jobs-table").splitlines()
        assert [r.split()[:2] for r in rows] == [["monitor", "fraud"], ["train", "fraud"]]
        await pilot.press("n")
        await settle(pilot)

    drive(home_dir, steps)
    assert ran == [(home_dir.resolve(), "monitor", "fraud")]


def test_runs_detail_and_side_by_side(home_dir: Path) -> None:
    async def steps(pilot) -> None:
        await pilot.press("5")
        await settle(pilot)
        rows = text(pilot.app, "#runs-table").splitlines()
        assert len(rows) == 2 and all(" fraud " in r for r in rows)
        assert "run " in text(pilot.app, "#run-detail") and "param" in text(pilot.app, "#run-detail")
        await pilot.press("m", "down", "m")
        await settle(pilot)
        detail = text(pilot.app, "#run-detail")
        assert detail.startswith("Comparing two runs")
        assert "param " in detail and "metric train_binary_logloss" in detail

    drive(home_dir, steps)


def test_gpu_screen_with_two_fake_gpus_and_cost(home_dir: Path) -> None:
    cost = CostSection(electricity_per_kwh=0.3, hardware_price=30_000, amortization_years=3)

    async def steps(pilot) -> None:
        await pilot.press("6")
        await settle(pilot)
        assert text(pilot.app, "#gpu-status").startswith("2 NVIDIA GPU(s), driver 550.54.15")
        gpus = text(pilot.app, "#gpus").splitlines()
        assert gpus[0].startswith("0 NVIDIA H100 80GB HBM3 87 % 10.0 GB / 80.0 GB 54 °C 312 W 700 W 5.0 kJ")
        assert gpus[1].startswith("1 Tesla T4 20 % 1.0 GB / 16.0 GB n/a 30 W 70 W")
        costs = text(pilot.app, "#cost")
        assert "cost per hour      1.2434 EUR" in costs  # 342 W × 0.3 EUR/kWh + 30,000 EUR over 3 years
        assert "per training run" in costs and "(run " in costs and "per 1,000 preds" in costs

    drive(home_dir, steps, cost=cost, gpus=GpuProbe(FakeNvml([H100, T4])))


def test_gpu_screen_without_a_gpu_says_so(home_dir: Path) -> None:
    nvml = FakeNvml([], init_error=FakeNvml.NVMLError_LibraryNotFound(FakeNvml.NVMLError_LibraryNotFound))

    async def steps(pilot) -> None:
        await pilot.press("6")
        await settle(pilot)
        assert text(pilot.app, "#gpu-status").startswith("no NVIDIA GPU")
        assert "cores" in text(pilot.app, "#host") and "memory" in text(pilot.app, "#host")
        assert "cost: not configured" in text(pilot.app, "#cost")
        assert "metadata.db" in text(pilot.app, "#disk") and "free" in text(pilot.app, "#disk")  # disk use per part
        assert not pilot.app.query_one("#gpus").display

    drive(home_dir, steps, gpus=GpuProbe(nvml))


def test_recent_traffic_from_the_prediction_log(tmp_path: Path) -> None:
    assert recent_traffic(tmp_path, "fraud").requests == 0
    assert not (tmp_path / "predictions.db").exists()  # reading never creates it
    now = time.time()
    store = PredictionStore(tmp_path / "predictions.db")
    rows = [
        (
            f"r{i}",
            0,
            "fraud",
            1,
            "production",
            None,
            now - 30 + i * 0.1,
            None,
            None,
            "{}",
            0.1,
            0,
            float(i + 1),
            200 if i % 10 else 500,
            None,
            None,
        )
        for i in range(100)
    ]
    rows.append(("old", 0, "fraud", 1, "production", None, now - 600, None, None, "{}", 0.1, 0, 999.0, 200, None, None))
    store.append(rows)
    store.close()
    t = recent_traffic(tmp_path, "fraud", seconds=60, now=now)
    assert (t.requests, t.per_second, t.error_rate) == (100, 100 / 60, 0.1)
    assert t.p50_ms == pytest.approx(50.5) and t.p99_ms == pytest.approx(99.01)


def test_background_server_serves_and_stops_or_says_the_port_is_taken(home_dir: Path) -> None:
    import httpx

    from appliance.errors import Conflict
    from appliance.serving.server import BackgroundServer

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = BackgroundServer(home_dir, "127.0.0.1", port).start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        with pytest.raises(Conflict, match="could not start"):
            BackgroundServer(home_dir, "127.0.0.1", port).start()
    finally:
        server.stop()
    assert not server._thread.is_alive()

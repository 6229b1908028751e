"""The monitor job end to end: live traffic through the real API, labels posted later, the job run
through the scheduler's entry point, results read back through the store, the API and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from appliance.alerts import actions
from appliance.alerts.records import list_alerts
from appliance.config import bundled_spec_path
from appliance.errors import Conflict
from appliance.home import Home
from appliance.layout import Layout
from appliance.monitoring import store
from appliance.scheduler.jobs import run_job
from appliance.scheduler.scheduler import start_scheduler
from appliance.spec import load_spec
from tests.conftest import HookReceiver, small_spec, webhook_alert

DAYS = [date(2026, 10, 18), date(2026, 10, 19), date(2026, 10, 20)]  # the drift starts on 10-20
REQUEST = ["user_id", "event_time", "amount", "merchant_category", "hour", "is_foreign"]


def send_days(server) -> dict[date, list[tuple[str, list[int], list[float]]]]:
    """Each day's live rows through the API in batches: (request id, labels, served probabilities)."""
    spec = load_spec(bundled_spec_path())
    live = pl.read_parquet(spec.resolve(spec.data.live))
    sent = {}
    for day in DAYS:
        part = live.filter(pl.col("event_time").dt.date() == day)
        records = part.select(REQUEST).with_columns(pl.col("event_time").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_dicts()
        for i in range(0, len(records), 1000):
            r = server.client.post("/v1/models/fraud/predict", json=records[i : i + 1000])
            assert r.status_code == 200, r.text
            sent.setdefault(day, []).append(
                (
                    r.json()["request_id"],
                    part["is_fraud"][i : i + 1000].to_list(),
                    [p["probability"] for p in r.json()["predictions"]],
                )
            )
    return sent


def post_labels(server, batches) -> None:
    for request_id, labels, _ in batches:
        outcomes = [{"request_id": request_id, "position": j, "outcome": y} for j, y in enumerate(labels)]
        assert server.client.post("/v1/models/fraud/feedback", json={"outcomes": outcomes}).json()["unknown"] == []


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_monitor_job_end_to_end(server):
    sent = send_days(server)
    post_labels(server, sent[DAYS[0]] + sent[DAYS[2]])  # 10-19's labels have not arrived yet
    run = run_job(server.home, "monitor", "fraud")
    assert run.status == "succeeded", run.error
    assert run.summary["recomputed"] == 3 and run.summary["version"] == 1

    with Home(server.home) as home:
        out = store.results(home, "fraud")
        assert out.height == run.summary["rows"]
        # The job judged the alert rules on those rows: 10-20's AUC fell, so the critical rule retrains.
        fired = list_alerts(home.conn, "fraud")
        assert sorted(a.id for a in fired) == run.summary["alerts_fired"]
        assert {"accuracy-critical", "drift"} <= {a.rule for a in fired}
    assert actions.wait_for_actions(300)
    with Home(server.home) as home:
        critical = next(a for a in list_alerts(home.conn, "fraud") if a.rule == "accuracy-critical")
        assert [(a.action, a.status in ("succeeded", "failed")) for a in critical.actions] == [("retrain", True)]
        # Windows are the requests' event-time days, whatever the wall clock said when they were served.
        drift = store.results(home, "fraud", check="drift")
        starts = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in DAYS]
        assert sorted(drift["window_start"].unique().to_list()) == starts
        assert (drift["window_end"] - drift["window_start"] == timedelta(days=1)).all()
        served = {d: sum(len(b[1]) for b in sent[d]) for d in DAYS}
        serving = out.filter(check="serving", method="requests").sort("window_start")
        assert serving["rows"].to_list() == [served[d] for d in DAYS]

        amount = drift.filter(feature="amount").group_by("window_start").agg(pl.col("alert").any()).sort("window_start")
        assert amount["alert"].to_list() == [False, False, True]

        auc = out.filter(check="performance", feature="*", method="auc").sort("window_start")
        for day, value in zip(DAYS, auc["value"]):
            if day == DAYS[1]:
                assert value is None
                continue
            labels = [y for b in sent[day] for y in b[1]]
            scores = [p for b in sent[day] for p in b[2]]
            assert value == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
        assert auc["alert"].to_list() == [False, False, True]
        assert out.filter(check="performance", feature="country=US").height > 0

        band = out.filter(check="estimated").pivot(on="method", index="window_start", values="value")
        assert band.height == 3 and ((band["auc_lower"] < band["auc"]) & (band["auc"] < band["auc_upper"])).all()
        assert out.filter(check="machine", feature="cpu").height == 1
        assert out.filter(check="pipeline", method="success_streak")["value"].to_list() == [2.0]

    again = run_job(server.home, "monitor", "fraud")
    assert (again.summary["recomputed"], again.summary["relabelled"]) == (0, 0)
    post_labels(server, sent[DAYS[1]])
    relabelled = run_job(server.home, "monitor", "fraud")
    assert (relabelled.summary["recomputed"], relabelled.summary["relabelled"]) == (0, 1)
    with Home(server.home) as home:
        auc = store.results(home, "fraud", check="performance", since="2026-10-19").filter(feature="*", method="auc")
        assert auc["value"].null_count() == 0 and auc.height == 2
        assert [r.id for r in store.job_runs(home, "monitor", "fraud")] == [relabelled.id, again.id, run.id]

    r = server.client.get("/v1/models/fraud/monitoring", params={"check": "drift", "since": "2026-10-20"})
    assert r.status_code == 200
    rows = r.json()["results"]
    assert rows and {row["window_start"] for row in rows} == {"2026-10-20T00:00:00.000000Z"}
    assert any(row["feature"] == "amount" and row["alert"] for row in rows)
    assert server.client.get("/v1/models/fraud/monitoring", params={"check": "nope"}).status_code == 422
    assert server.client.get("/v1/models/nope/monitoring").status_code == 404

    shown = cli(server.home, "monitor", "fraud", "--check", "drift")
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("2026-10-20"))
    assert "!" in line and "2026-10-18" in shown.stdout
    shown = cli(server.home, "monitor", "fraud", "--check", "performance")
    assert "ALERT" in next(x for x in shown.stdout.splitlines() if x.startswith("2026-10-20"))
    listed = cli(server.home, "jobs", "list")
    assert listed.returncode == 0 and "monitor  fraud  every 1h" in listed.stdout and "succeeded" in listed.stdout
    ran = cli(server.home, "jobs", "run", "monitor", "fraud")
    assert ran.returncode == 0 and "succeeded" in ran.stdout and "recomputed 0" in ran.stdout
    bad = cli(server.home, "monitor", "fraud", "--since", "yesterday")
    assert bad.returncode == 1 and bad.stderr.startswith("error: since 'yesterday'")
    assert actions.wait_for_actions(300)  # a retrain the gates rejected is retried by later runs


def test_one_job_run_at_a_time_and_dead_runs_do_not_block(home_dir):
    with Home(home_dir) as home:
        conn = store.open_monitoring(home.root)
        held = store.begin_job_run(conn, "monitor", "fraud", "manual")  # this process: alive
        with pytest.raises(Conflict, match="already running"):
            run_job(home_dir, "monitor", "fraud")
        store.end_job_run(conn, held, "succeeded")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        conn.execute(
            "INSERT INTO job_runs (job, model, started_at, status, pid, trigger) "
            "VALUES ('monitor', 'fraud', 0, 'running', ?, 'schedule')",
            (int(dead.stdout),),
        )
        conn.close()
        run = run_job(home_dir, "monitor", "fraud")
        assert run.status == "succeeded"
        orphan = next(r for r in store.job_runs(home, "monitor", "fraud") if r.started_at == 0)
        assert orphan.status == "failed" and "ended without finishing" in orphan.error


def test_scheduler_runs_each_job_once_at_a_time_with_missed_runs_coalesced(home_dir):
    scheduler = start_scheduler(home_dir)
    try:
        job = scheduler.get_job("monitor:fraud")
        assert job.max_instances == 1 and job.coalesce and job.misfire_grace_time == 3600
        assert job.trigger.interval == timedelta(hours=1)
        assert scheduler.get_job("train:fraud") is None  # no [training] schedule in the sample spec
    finally:
        scheduler.shutdown(wait=False)


def test_a_failing_job_is_recorded_not_raised(home_dir):
    with Home(home_dir) as home:
        home.conn.execute("DELETE FROM aliases WHERE model = 'fraud' AND alias = 'production'")
    run = run_job(home_dir, "monitor", "fraud")
    assert run.status == "failed" and "no production version" in run.error


def test_rows_the_log_refused_reach_the_monitor_job_and_open_the_overflow_alert(home_dir):
    from storage.prediction_log import PredictionStore

    log = PredictionStore(Layout(home_dir).predictions_db)
    log.record_overflow({"fraud": 12, "other-model": 5, "*": 3})  # '*': shadow rows, which name no model
    log.close()
    first = run_job(home_dir, "monitor", "fraud")
    second = run_job(home_dir, "monitor", "fraud")  # nothing refused since
    assert first.status == second.status == "succeeded"
    with Home(home_dir) as home:
        overflow = store.results(home, "fraud", check="serving").filter(method="log_overflow").sort("computed_at")
        [alert] = list_alerts(home.conn, "fraud")
    assert overflow["value"].to_list() == [15.0, 0.0]
    assert (alert.rule, alert.severity, alert.value, alert.count) == ("prediction-log-overflow", "critical", 15.0, 1)
    assert (first.summary["alerts_fired"], second.summary["alerts_fired"]) == ([alert.id], [])


def test_appliance_jobs_run_monitor_raises_the_alerts_with_nothing_else_running(home_dir, capsys):
    """The CLI's monitor run judges the alert rules itself: no server, no scheduler, nothing installed."""
    from appliance.cli import main
    from storage.prediction_log import PredictionStore

    log = PredictionStore(Layout(home_dir).predictions_db)
    log.record_overflow({"fraud": 4})
    log.close()
    assert main(["--home", str(home_dir), "jobs", "run", "monitor", "fraud"]) == 0
    out = capsys.readouterr().out
    with Home(home_dir) as home:
        [alert] = list_alerts(home.conn, "fraud")
        [run] = store.job_runs(home, "monitor", "fraud")
    assert (alert.rule, alert.value, alert.status) == ("prediction-log-overflow", 4.0, "open")
    assert run.summary["alerts_fired"] == [alert.id] and f"alerts fired {alert.id}" in out


class SlowReceiver(HookReceiver):
    """Takes a second to accept each delivery: longer than the monitor run itself."""

    bodies: ClassVar[list[dict]] = []

    def status(self) -> int:
        time.sleep(1)
        return 200


def test_appliance_jobs_run_ends_after_the_actions_its_alerts_started(home_dir, tmp_path, capsys):
    """An alert's action runs on a thread of the command's process: the command waits for it, or it would die
    half-way (here a webhook; a retrain the same)."""
    from appliance.cli import main
    from storage.prediction_log import PredictionStore

    spec = small_spec(tmp_path / "webhook")
    with webhook_alert(spec, SlowReceiver, "log-overflow", "log_overflow", 0):
        with Home(home_dir) as home:
            home.add_model(load_spec(spec))  # the same model, its spec moved to the one with the webhook
        log = PredictionStore(Layout(home_dir).predictions_db)
        log.record_overflow({"fraud": 4})
        log.close()
        assert main(["--home", str(home_dir), "jobs", "run", "monitor", "fraud"]) == 0
    assert "waiting for the alerts' actions" in capsys.readouterr().out
    with Home(home_dir) as home:
        [alert] = list_alerts(home.conn, "fraud")
        [action] = alert.actions
    assert (alert.rule, action.action, action.status) == ("log-overflow", "webhook", "succeeded")
    assert [b["alert"] for b in SlowReceiver.bodies] == [alert.id]


def test_a_library_call_of_the_monitor_judges_no_alert_rules(home_dir):
    from appliance.monitoring.monitor import monitor
    from storage.prediction_log import PredictionStore

    log = PredictionStore(Layout(home_dir).predictions_db)
    log.record_overflow({"fraud": 4})
    log.close()
    with Home(home_dir) as home:
        assert monitor(home, "fraud").rows > 0
        overflow = store.results(home, "fraud", check="serving").filter(method="log_overflow")
        assert overflow["value"].to_list() == [4.0]  # the rule's row is stored …
        assert list_alerts(home.conn, "fraud") == []  # … and no rule was judged on it

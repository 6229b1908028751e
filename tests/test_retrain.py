"""Retraining: the held-out days of a retrain (the freshest ones), and a retrain started over the admin API."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import msgspec
import polars as pl
import pytest

from appliance.config import bundled_spec_path
from appliance.errors import InvalidInput
from appliance.features.training_set import retrain_cutoff
from appliance.gateway.keys import create_key
from appliance.home import Home
from appliance.spec import load_spec
from appliance.training import retrain
from appliance.training.stages import evaluation_split

DAY0 = datetime(2026, 10, 1, tzinfo=UTC)


def spec_with(**training):
    spec = load_spec(bundled_spec_path())
    return msgspec.structs.replace(spec, training=msgspec.structs.replace(spec.training, **training))


def days_of(*classes: tuple[int, int], skip: tuple[int, ...] = ()) -> pl.DataFrame:
    """Rows over consecutive days (days in ``skip`` left empty), (positives, negatives) per day."""
    rows = []
    for i, (positives, negatives) in enumerate(classes):
        day = DAY0 + timedelta(days=i + sum(1 for s in skip if s <= i))
        rows += [(day + timedelta(minutes=j), 1) for j in range(positives)]
        rows += [(day + timedelta(minutes=positives + j), 0) for j in range(negatives)]
    return pl.DataFrame(rows, schema={"event_time": pl.Datetime("us", "UTC"), "is_fraud": pl.Int8}, orient="row")


def test_a_retrain_holds_out_the_newest_day_widened_until_each_class_has_enough_rows():
    spec = spec_with(eval_days=4, retrain_eval_days=1, retrain_min_per_class=10)
    frame = days_of((20, 500), (20, 500), (4, 500), (3, 500), (12, 500))
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=4)  # the newest day has 12 ≥ 10
    frame = days_of((20, 500), (20, 500), (4, 500), (3, 500), (5, 500))
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=2)  # 5 + 3 + 4 = 12 over three days
    frame = days_of((20, 500), (1, 500), (1, 500), (1, 500), (1, 500))
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=1)  # never wider than eval_days
    # days without labelled rows do not count: the window is the newest days that have some
    frame = days_of((20, 500), (20, 500), (6, 500), (5, 500), skip=(3,))
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=2)
    # the minority class decides, whichever it is
    frame = days_of((500, 20), (500, 20), (500, 6), (500, 5))
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=2)


def test_an_initial_training_keeps_its_eval_days_and_a_retrain_trains_on_everything_older():
    spec = spec_with(eval_days=3, retrain_eval_days=1, retrain_min_per_class=10)
    frame = days_of(*[(15, 300)] * 6)
    train, evaluation, cutoff = evaluation_split(spec, frame)
    assert cutoff == DAY0 + timedelta(days=3) and evaluation.height == 3 * 315
    train, evaluation, cutoff = evaluation_split(spec, frame, retrain=True)
    assert cutoff == DAY0 + timedelta(days=5) and evaluation.height == 315 and train.height == 5 * 315
    assert train["event_time"].max() < cutoff <= evaluation["event_time"].min()
    with pytest.raises(InvalidInput, match="retrain_eval_days"):
        evaluation_split(spec, days_of((15, 300)), retrain=True)  # one day: nothing left to train on


def test_a_retrain_over_the_admin_api_runs_in_the_background_and_is_watched_by_its_run_id(server):
    c = server.client
    with Home(server.home) as home:
        admin = {"authorization": f"Bearer {create_key(home.conn, ['admin'])[1]}"}
        predictor = {"authorization": f"Bearer {create_key(home.conn, ['predict', 'feedback'])[1]}"}
        before = len(home.registry.versions("fraud"))
    wait_for(lambda: c.get("/v1/models/fraud/runs/nope", headers=admin).status_code == 404)  # keys seen
    # labelled traffic for the retrain to learn from (a batch large enough for the contract's volume floor)
    live = pl.read_parquet(bundled_spec_path().parent / "live.parquet").head(800)
    records = live.select(
        "user_id",
        "amount",
        "merchant_category",
        "hour",
        "is_foreign",
        event_time=pl.col("event_time").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ).to_dicts()
    answer = c.post("/v1/models/fraud/predict", json=records, headers=predictor).json()
    fed = c.post(
        "/v1/models/fraud/feedback",
        headers=predictor,
        json={
            "outcomes": [
                {"request_id": answer["request_id"], "position": i, "outcome": float(y)}
                for i, y in enumerate(live["is_fraud"])
            ]
        },
    )
    assert fed.json()["accepted"] == 800
    assert c.post("/v1/models/fraud/retrain", json={}, headers=predictor).status_code == 403
    assert c.post("/v1/models/nope/retrain", json={}, headers=admin).status_code == 404

    started = c.post("/v1/models/fraud/retrain", json={"reason": "new labels"}, headers=admin)
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["status"] == "started" and body["watch"] == f"/v1/models/fraud/runs/{body['run_id']}"
    again = c.post("/v1/models/fraud/retrain", json={}, headers=admin)
    assert again.status_code == 409 and "already training" in again.json()["detail"]

    deadline = time.monotonic() + 120
    while (run := c.get(body["watch"], headers=admin).json())["status"] in ("starting", "running"):
        assert time.monotonic() < deadline, run
        time.sleep(0.25)
    assert run["status"] == "succeeded", run["error"]
    assert run["kind"] == "retrain" and run["id"] == body["run_id"]
    ingest = next(s for s in run["stages"] if s["stage"] == "ingest")
    assert ingest["outputs"]["feedback"]["accepted"] == 800  # the labelled predictions were learned from
    wait_for(lambda: retrain.claim("fraud"))  # the model is free for the next retrain again
    retrain.release("fraud")
    with Home(server.home) as home:
        assert len(home.registry.versions("fraud")) == before + 1
        trail = [
            (e.actor, e.action, e.detail["run_id"])
            for e in home.registry.audit_log("fraud")
            if e.action.startswith("retrain_")
        ]
    actor = f"api:{admin['authorization'].split('_')[1]}"
    assert trail == [(actor, "retrain_finished", body["run_id"]), (actor, "retrain_started", body["run_id"])]


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_closed_loop_through_the_real_api_drift_alert_retrain_gates_canary_verdict(server, tmp_path):
    """The demo's loop on four live days (10-19 clean, drift from 10-20), each day's alert actions
    finished before the next day is sent, so the loop does not depend on this machine's speed."""
    from appliance.alerts.actions import wait_for_actions
    from appliance.alerts.records import list_alerts
    from appliance.deployment.deployments import latest
    from appliance.monitoring.store import job_runs
    from appliance.replay import _monitoring_job, replay
    from tests.conftest import small_spec

    spec_path = small_spec(
        tmp_path,
        **{
            "min_recall = 0.30": "min_recall = 0.0",  # 60 trees, not 300
            "max_p99_ms = 10.0": "max_p99_ms = 1000.0",  # a shared machine
            "canary_steps = [5, 25, 50, 100]": "canary_steps = [50, 100]",
        },
    )
    live = spec_path.parent / "live.parquet"
    frame = pl.read_parquet(live.resolve())
    live.unlink()
    frame.filter(
        pl.col("event_time").dt.date().is_between(datetime(2026, 10, 19).date(), datetime(2026, 10, 22).date())
    ).write_parquet(live)
    with Home(server.home) as home:
        home.add_model(load_spec(spec_path))
    job = _monitoring_job()

    def monitor_then_actions(root, model, say):
        job(root, model, say)
        assert wait_for_actions(120)

    lines: list[str] = []
    days = replay(server.home, "fraud", server.url, speed=0, monitor=monitor_then_actions, say=lines.append)
    assert [d.day for d in days] == ["2026-10-19", "2026-10-20", "2026-10-21", "2026-10-22"]
    with Home(server.home) as home:
        alerts = {a.rule: a for a in list_alerts(home.conn, "fraud")}
        assert {"accuracy-critical", "drift"} <= set(alerts)
        retrains = [a for a in alerts["accuracy-critical"].actions if a.action == "retrain"]
        # 10-20: the new pattern is only in the held-out day, so the gates reject; 10-21: it trains
        assert [r.status for r in retrains] == ["failed", "succeeded"], [r.detail for r in retrains]
        assert retrains[0].detail["evaluated_from"] == "2026-10-20" and not retrains[0].detail["gates_passed"]
        assert retrains[1].detail["evaluated_from"] == "2026-10-21" and retrains[1].detail["fresh_rows"] > 0
        candidate = retrains[1].detail["version"]
        d = latest(home, "fraud")
        assert (d.strategy, d.candidate_version) == ("canary", candidate)
        assert d.status in ("completed", "rolled_back") and d.reason  # canary analysis decided, saying why
        production = home.registry.alias("fraud", "production")
        assert production == (candidate if d.status == "completed" else 1)
        monitor_runs = job_runs(home, "monitor", "fraud")
        assert [r.trigger for r in monitor_runs] == ["replay"] * 4 and {r.status for r in monitor_runs} == {"succeeded"}
    # what the demo's user reads: the alerts right after 10-20's monitor run, then the retrains and the canary
    day_20, day_21 = (
        next(i for i, line in enumerate(lines) if line.startswith(day)) for day in ("2026-10-20", "2026-10-21")
    )
    assert any("drift" in line and "ALERT" in line for line in lines[day_20:day_21]), lines
    verdict = "completed" if d.status == "completed" else "ROLLED BACK"
    assert any(f"deployment {d.id}: v{candidate} {verdict}" in line for line in lines), lines

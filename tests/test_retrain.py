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
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=4)          # the newest day has 12 ≥ 10
    frame = days_of((20, 500), (20, 500), (4, 500), (3, 500), (5, 500))
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=2)          # 5 + 3 + 4 = 12 over three days
    frame = days_of((20, 500), (1, 500), (1, 500), (1, 500), (1, 500))
    assert retrain_cutoff(spec, frame) == DAY0 + timedelta(days=1)          # never wider than eval_days
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
        evaluation_split(spec, days_of((15, 300)), retrain=True)     # one day: nothing left to train on


def test_a_retrain_over_the_admin_api_runs_in_the_background_and_is_watched_by_its_run_id(server):
    c = server.client
    with Home(server.home) as home:
        admin = {"authorization": f"Bearer {create_key(home.conn, ['admin'])[1]}"}
        predictor = {"authorization": f"Bearer {create_key(home.conn, ['predict', 'feedback'])[1]}"}
        before = len(home.registry.versions("fraud"))
    wait_for(lambda: c.get("/v1/models/fraud/runs/nope", headers=admin).status_code == 404)  # keys seen
    # labelled traffic for the retrain to learn from (a batch large enough for the contract's volume floor)
    live = pl.read_parquet(bundled_spec_path().parent / "live.parquet").head(800)
    records = live.select("user_id", "amount", "merchant_category", "hour", "is_foreign",
                          event_time=pl.col("event_time").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_dicts()
    answer = c.post("/v1/models/fraud/predict", json=records, headers=predictor).json()
    fed = c.post("/v1/models/fraud/feedback", headers=predictor, json={"outcomes": [
        {"request_id": answer["request_id"], "position": i, "outcome": float(y)}
        for i, y in enumerate(live["is_fraud"])]})
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
    assert ingest["outputs"]["feedback"]["accepted"] == 800      # the labelled predictions were learned from
    wait_for(lambda: retrain.claim("fraud"))           # the model is free for the next retrain again
    retrain.release("fraud")
    with Home(server.home) as home:
        assert len(home.registry.versions("fraud")) == before + 1
        trail = [(e.actor, e.action, e.detail["run_id"]) for e in home.registry.audit_log("fraud")
                 if e.action.startswith("retrain_")]
    actor = f"api:{admin['authorization'].split('_')[1]}"
    assert trail == [(actor, "retrain_finished", body["run_id"]), (actor, "retrain_started", body["run_id"])]


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)

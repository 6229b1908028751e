"""Labelled predictions as a retrain's batch, over a small model unlike the sample: its contract's unique
id is an integer (or a string) and has columns a request never carries; its requests send an integer
key, integer category codes, true/false flags for a 0/1 column, and ISO, Unix-seconds or no event times."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from appliance.data.snapshots import list_snapshots, read_snapshots
from appliance.errors import InvalidInput
from appliance.home import Home
from appliance.layout import Layout
from appliance.spec import load_spec
from appliance.training.feedback_batch import (
    contract_value,
    ingest_feedback,
    labelled_batch,
)
from appliance.training.pipeline import train
from appliance.training.runs import pipeline_run
from storage.prediction_log import PredictionStore
from tests.own_data import spec_text

DAY0 = datetime(2026, 5, 1, tzinfo=UTC)
HISTORY_DAYS, PER_DAY = 8, 60


def write_model(folder: Path, id_type: str, key_type: str) -> Path:
    """A spec, its contract and 8 days of history (60 rows a day); returns the spec's path."""
    rng = np.random.default_rng(5)
    n = HISTORY_DAYS * PER_DAY
    amount = rng.uniform(1, 99, n)
    accounts = rng.integers(100, 130, n)
    frame = pl.DataFrame(
        {
            "visit_id": [f"v{i}" for i in range(n)] if id_type == "string" else list(range(1, n + 1)),
            "at": [DAY0 + timedelta(minutes=24 * i) for i in range(n)],
            "account": [str(a) for a in accounts] if key_type == "string" else accounts,
            "amount": amount,
            "channel": rng.integers(1, 4, n),
            "flag": rng.integers(0, 2, n),
            "region": rng.choice(["north", "south"], n),
            "churned": ((amount + rng.normal(0, 15, n)) > 60).astype(int),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / "history.parquet")
    (folder / "contract.toml").write_text(spec_text("visits", "contract.toml", id_type=id_type, key_type=key_type))
    (folder / "churn.toml").write_text(spec_text("visits", "spec.toml"))
    return folder / "churn.toml"


def log_labelled(root: Path, key_type: str, count: int = 40, outcome=None) -> str:
    """``count`` predictions of one list request on the day after the history, as serving logs them,
    each labelled (``outcome(i)``, default: the amount's class). Returns the request id."""
    request_id = uuid.uuid4().hex
    day = DAY0 + timedelta(days=HISTORY_DAYS)
    rows, outcomes = [], []
    for i in range(count):
        at = day + timedelta(minutes=30 * i)
        record = {
            "account": 100 + i % 7 if key_type == "integer" else f"{100 + i % 7}",
            "amount": 10.0 + 2 * i,
            "channel": 1 + i % 3,
            "flag": i % 2 == 0,
        }
        if i % 3 == 0:
            record["at"] = at.isoformat().replace("+00:00", "Z")
        elif i % 3 == 1:
            record["at"] = at.timestamp()  # Unix seconds
        # else: no event time; scored as of its arrival
        rows.append(
            (
                request_id,
                i,
                "churn",
                1,
                "production",
                None,
                at.timestamp(),
                record.get("at"),
                str(record["account"]),
                json.dumps(record),
                0.5,
                1,
                1.0,
                200,
                None,
                None,
            )
        )
        outcomes.append((request_id, i, float(outcome(i) if outcome else int(record["amount"] > 60))))
    store = PredictionStore(Layout(root).predictions_db)
    try:
        store.append(rows)
        assert store.attach_feedback("churn", outcomes) == []
    finally:
        store.close()
    return request_id


def test_a_logged_value_becomes_the_contracts_type_or_stays_as_it_came_for_the_check_to_refuse():
    assert contract_value(3.0, "integer") == 3 and contract_value(" 7 ", "integer") == 7
    assert contract_value(True, "integer") == 1  # a flag in a 0/1 column
    assert contract_value(1, "boolean") is True and contract_value("false", "boolean") is False
    assert contract_value(42, "string") == "42" and contract_value(2.0, "string") == "2"
    assert contract_value(5, "float") == 5.0
    assert contract_value(1_780_000_000, "timestamp") == datetime.fromtimestamp(1_780_000_000, UTC)
    assert contract_value("2026-05-09T00:30:00Z", "timestamp") == datetime(2026, 5, 9, 0, 30, tzinfo=UTC)
    for value, kind in ((3.5, "integer"), (2, "boolean"), (True, "float"), ("soon", "timestamp")):
        assert contract_value(value, kind) == value  # not one: the check quarantines it


@pytest.mark.parametrize("id_type, key_type", [("integer", "integer"), ("string", "string")])
def test_a_retrain_learns_from_labelled_predictions_whatever_the_contracts_unique_id(tmp_path, id_type, key_type):
    spec = load_spec(write_model(tmp_path / "spec", id_type, key_type))
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        request_id = log_labelled(home.root, key_type)
        batch, _ = labelled_batch(home, spec)
        run_id = uuid.uuid4().hex
        outcome = train(home, spec, retrain=True, new_run_id=run_id)
        run = pipeline_run(home.conn, run_id)
        snapshots = list_snapshots(home.conn, "churn")
        fresh = read_snapshots(home.offline, snapshots[-1:])
        everything = read_snapshots(home.offline, snapshots)

    assert batch.height == 40
    assert outcome.feedback_rows == 40 and run.status == "succeeded"
    stages = {s.stage: s.outputs for s in run.stages}
    assert stages["ingest"]["feedback"]["accepted"] == 40 and stages["ingest"]["feedback"]["quarantined"] == 0
    # the retrain read the history and every labelled prediction, and judged itself on the labelled day
    assert stages["validate"]["rows"] == HISTORY_DAYS * PER_DAY + 40
    assert everything.height == HISTORY_DAYS * PER_DAY + 40
    assert stages["features"]["eval_rows"] == 40 and outcome.cutoff.startswith("2026-05-09")

    # the new snapshot holds the labelled rows typed as the contract declares
    contract_types = {
        "visit_id": pl.Int64 if id_type == "integer" else pl.String,
        "at": pl.Datetime("us", "UTC"),
        "account": pl.Int64 if key_type == "integer" else pl.String,
        "amount": pl.Float64,
        "channel": pl.Int64,
        "flag": pl.Int64,
        "region": pl.String,
        "churned": pl.Int64,
    }
    assert dict(fresh.schema) == contract_types
    fresh = fresh.sort("amount")
    if id_type == "integer":  # a request carries no id, and none is made up in the user's id space
        assert fresh["visit_id"].null_count() == 40
    else:  # the prediction's own identity
        assert sorted(fresh["visit_id"]) == sorted(f"{request_id}:{i}" for i in range(40))
    assert fresh["region"].null_count() == 40  # never carried: null, not a fault
    assert fresh["account"].to_list()[:3] == ([100, 101, 102] if key_type == "integer" else ["100", "101", "102"])
    day = DAY0 + timedelta(days=HISTORY_DAYS)
    # ISO text, Unix seconds and a left-out event time (the prediction's arrival) alike
    assert fresh["at"].to_list() == [day + timedelta(minutes=30 * i) for i in range(40)]
    assert fresh["flag"].to_list() == [1 - i % 2 for i in range(40)]
    assert fresh["channel"].to_list() == [1 + i % 3 for i in range(40)]
    assert fresh["churned"].to_list() == [int(10.0 + 2 * i > 60) for i in range(40)]


def test_a_retrain_whose_labelled_predictions_are_all_refused_fails_saying_why(tmp_path):
    spec = load_spec(write_model(tmp_path / "spec", "integer", "integer"))
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        log_labelled(home.root, "integer", count=12, outcome=lambda i: 2)  # not a class the target has
        run_id = uuid.uuid4().hex
        with pytest.raises(InvalidInput) as refused:
            train(home, spec, retrain=True, new_run_id=run_id)
        message = str(refused.value)
        assert "12 labelled predictions came back" in message and "accepted none" in message
        assert "churned: not an allowed value (12)" in message and "appliance train churn --resume" in message
        run = pipeline_run(home.conn, run_id)
        assert run.status == "failed" and "churned: not an allowed value" in run.error
        assert [s.status for s in run.stages] == ["failed"] and run.stages[0].stage == "ingest"
        # nothing was written: the outcomes are offered again, and a fixed one is learnt from
        assert not home.layout.feedback.exists()
        store = PredictionStore(home.layout.predictions_db)
        try:
            store.conn.execute("UPDATE feedback SET outcome = 1, received_at = received_at + 1")
            store.conn.commit()
        finally:
            store.close()
        report = ingest_feedback(home, spec)
        assert report is not None and report.accepted == 12

"""A retrain with nothing new to learn from registers nothing and says what it trained on, whoever starts it (the
CLI, the scheduler's train job, an alert's retrain action, the admin API); new labels, a new batch or a changed
spec train as before. On data sets unlike the sample: loans (string ids, no entity, CSV with text times) and
subscriptions (integer keys, an entity file)."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import cli, in_production, ok, running_server
from own_data import write_loans, write_subscriptions

from appliance.alerts import actions, records
from appliance.data.snapshots import list_snapshots
from appliance.deployment import deployments
from appliance.errors import Conflict
from appliance.gateway.keys import create_key
from appliance.home import Home
from appliance.monitoring.monitor import pipeline_checks
from appliance.replay import replay
from appliance.scheduler.jobs import run_job
from appliance.tracking.queries import run_detail
from appliance.training import runs
from storage.database import connect
from storage.tracking_schema import MIGRATIONS as TRACKING_MIGRATIONS
from tui.runs import describe

FIXTURES = Path(__file__).parent / "fixtures"

# fires on every monitor run once the model has a finished pipeline run: the alert path's retrain, on demand
RETRAIN_RULE = """
[deployment]
on_retrain = "canary"

[[alerts]]
name = "retrain-on-every-run"
check = "pipeline"
method = "runs"
op = ">"
threshold = 0
severity = "critical"
action = "retrain"
"""


def _versions(home: Path, model: str) -> list[int]:
    with Home(home) as h:
        return [v.version for v in h.registry.versions(model)]


def _latest_run(home: Path, model: str) -> runs.PipelineRun:
    with Home(home) as h:
        run_id = h.conn.execute(
            "SELECT id FROM runs WHERE model = ? ORDER BY started_at DESC LIMIT 1", (model,)
        ).fetchone()[0]
        return runs.pipeline_run(h.conn, run_id)


def _snapshots(home: Path, model: str) -> str:
    with Home(home) as h:
        return ", ".join(s.hash[:12] for s in list_snapshots(h.conn, model))


def test_a_retrain_right_after_a_train_registers_nothing_and_says_what_it_trained_on(tmp_path: Path):
    spec = write_loans(tmp_path / "data")
    contract = spec.parent / "contract.toml"  # 250 rows a day: under this floor warns (far under refuses)
    contract.write_text(contract.read_text() + "\n[volume]\nmin_rows_per_day = 300\n")
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))

    trained = ok(home, "train", "loans")
    assert "warning: volume" in trained and "below the contract's 300" in trained  # the ingest's warnings
    assert _versions(home, "loans") == [1]

    code, out, err = cli(home, "train", "loans", "--retrain")
    assert code == 0 and "error" not in err, err + out
    said = (
        f"nothing new to learn from: the data is what v1 trained on (snapshot {_snapshots(home, 'loans')}, "
        "0 new labelled predictions), with the same spec and code; no version registered"
    )
    assert said in out and "warning: volume" in out
    assert "registered loans" not in out and "gate " not in out
    assert _versions(home, "loans") == [1]
    skipped = _latest_run(home, "loans")
    assert (skipped.kind, skipped.status, skipped.error) == ("retrain", "skipped", None)
    assert skipped.outcome is not None and skipped.outcome.startswith(said)
    assert [(s.stage, s.status) for s in skipped.stages] == [("ingest", "succeeded")]  # nothing trained
    assert skipped.stages[0].outputs["learnt_before"] == 1
    listed = next(
        line for line in ok(home, "runs", "list", "--model", "loans").splitlines() if line.startswith(skipped.id[:8])
    )
    assert "retrain" in listed and "skipped" in listed
    assert said in ok(home, "runs", "show", skipped.id)
    with Home(home) as h:  # and the dashboard's run detail
        assert f"skipped: {said}" in "\n".join(describe(run_detail(h.tracking, skipped.id), {}, 80))
    with pytest.raises(Conflict, match="skipped; only a failed run can be resumed"):
        with Home(home) as h:
            runs.resumable_run(h.conn, "loans", skipped.id)

    # a new batch of the source's kind: something new, so the retrain trains
    ok(home, "ingest", "loans", str(spec.parent / "live.csv"))
    cli(home, "train", "loans", "--retrain")  # registered or rejected: either way a new version
    assert _versions(home, "loans") == [1, 2]
    again = ok(home, "train", "loans", "--retrain")
    assert (
        f"the data is what v2 trained on (snapshots {_snapshots(home, 'loans')}, 0 new labelled predictions)" in again
    ), again
    assert _versions(home, "loans") == [1, 2]

    # the same data with another learning rate is not what v2 learnt from
    spec.write_text(spec.read_text().replace("learning_rate = 0.1", "learning_rate = 0.05"))
    cli(home, "train", "loans", "--retrain")
    assert _versions(home, "loans") == [1, 2, 3]
    # a person's plain `train` trains whatever it finds, as it always did
    cli(home, "train", "loans")
    assert _versions(home, "loans") == [1, 2, 3, 4]

    # the two skipped retrains are neither successes nor failures of the pipeline
    with Home(home) as h:
        statuses = [r[0] for r in h.conn.execute("SELECT status FROM runs WHERE model = 'loans' ORDER BY started_at")]
        checks = {method: value for _, method, value in pipeline_checks(h, "loans")}
    assert statuses == ["succeeded", "skipped", "succeeded", "skipped", "succeeded", "succeeded"]
    assert checks == {"failure_streak": 0.0, "success_streak": 4.0, "runs": 4.0}


def test_scheduled_alert_and_api_retrains_skip_until_labelled_predictions_come_back(tmp_path: Path):
    spec = write_subscriptions(tmp_path / "data")
    spec.write_text(spec.read_text() + RETRAIN_RULE)
    home = tmp_path / "home"
    in_production(home, spec, "history.parquet")

    # the scheduler's train job: succeeded as a job, skipped as a retrain, and why
    job = run_job(home, "train", "subs", trigger="schedule")
    assert job.status == "succeeded", job.error
    assert job.summary["status"] == "skipped" and job.summary["learnt_before"] == 1
    assert job.summary["reason"].startswith(
        f"nothing new to learn from: the data is what v1 trained on (snapshot {_snapshots(home, 'subs')}, "
        "0 new labelled predictions)"
    )
    assert "version" not in job.summary and _versions(home, "subs") == [1]
    assert _latest_run(home, "subs").status == "skipped"

    # an alert's retrain: the action is skipped, saying why; no canary starts, nothing claims a retrain happened
    monitor = run_job(home, "monitor", "subs")
    assert monitor.status == "succeeded", monitor.error
    assert actions.wait_for_actions(300)
    with Home(home) as h:
        [alert] = [a for a in records.list_alerts(h.conn, "subs") if a.rule == "retrain-on-every-run"]
        [action] = records.alert(h.conn, alert.id).actions
        trail = [(e.actor, e.action, e.version) for e in h.registry.audit_log("subs") if e.actor == f"alert:{alert.id}"]
        assert deployments.latest(h, "subs") is None
    assert (action.action, action.status, action.detail["learnt_before"], action.detail["fresh_rows"]) == (
        "retrain",
        "skipped",
        1,
        0,
    )
    assert action.detail["outcome"].startswith("nothing new to learn from: the data is what v1 trained on")
    assert trail == [(f"alert:{alert.id}", "retrain_skipped", None)]
    assert _versions(home, "subs") == [1]

    with running_server(home) as server:
        with Home(home) as h:
            admin = {"authorization": f"Bearer {create_key(h.conn, ['admin'])[1]}"}
            key = create_key(h.conn, ["predict", "feedback"])[1]
        deadline = time.monotonic() + 30
        while server.client.get("/v1/models/subs/runs/nope", headers=admin).status_code != 404:  # keys seen
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # the admin API's retrain: its run says it skipped and why; the audit says it finished, skipped
        started = server.client.post("/v1/models/subs/retrain", json={"reason": "try"}, headers=admin)
        assert started.status_code == 202, started.text
        watch = started.json()["watch"]
        deadline = time.monotonic() + 120
        while (run := server.client.get(watch, headers=admin).json())["status"] in ("starting", "running"):
            assert time.monotonic() < deadline, run
            time.sleep(0.25)
        assert (run["status"], run["error"]) == ("skipped", None), run
        assert run["outcome"].startswith("nothing new to learn from: the data is what v1 trained on")
        assert [s["stage"] for s in run["stages"]] == ["ingest"]
        deadline = time.monotonic() + 30
        while not (finished := _audited(home, "subs", "retrain_finished")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert finished.detail["status"] == "skipped" and finished.version is None
        assert finished.detail["run_id"] == started.json()["run_id"]
        assert _versions(home, "subs") == [1]

        # labelled predictions come back: the next scheduled retrain learns from them
        days = replay(home, "subs", server.url, speed=0, days=2, label_delay_hours=0, key=key, monitor=lambda *_: None)
        labelled = days[-1].labels  # counted from the first day on
        assert labelled > 0
    job = run_job(home, "train", "subs", trigger="schedule")
    assert job.status == "succeeded", job.error
    assert job.summary["version"] == 2 and "reason" not in job.summary
    retrained = _latest_run(home, "subs")
    assert retrained.status == "succeeded"
    assert retrained.stages[0].outputs["feedback"]["accepted"] == labelled
    assert _versions(home, "subs") == [1, 2]


def _audited(home: Path, model: str, action: str):
    with Home(home) as h:
        return next((e for e in h.registry.audit_log(model) if e.action == action), None)


def test_a_skipped_run_neither_breaks_a_failure_streak_nor_hides_the_run_to_resume(tmp_path: Path):
    spec = write_loans(tmp_path / "data", days=4, live_days=1, per_day=20)
    with Home(tmp_path / "home") as h:
        ok(h.root, "init", "--spec", str(spec))
        for n, status in enumerate(["succeeded", "failed", "failed", "skipped", "skipped"]):
            run_id = f"{n}" * 32
            runs.start_run(h.conn, run_id, "loans", "retrain", {}, "test")
            runs.finish_run(
                h.conn,
                run_id,
                status=status,
                error="boom" if status == "failed" else None,
                outcome="nothing new to learn from" if status == "skipped" else None,
            )
        checks = {method: value for _, method, value in pipeline_checks(h, "loans")}
        assert checks == {"failure_streak": 2.0, "success_streak": 0.0, "runs": 3.0}
        # `train --resume` without a run finds the failed one behind the skips
        assert runs.resumable_run(h.conn, "loans", None).id == "2" * 32


def test_runs_recorded_before_skipping_existed_keep_their_rows_and_references(tmp_path: Path):
    shutil.copytree(FIXTURES / "home-v1", tmp_path / "home")
    before = sqlite3.connect(tmp_path / "home" / "metadata.db")
    old_runs = before.execute("SELECT id, model, kind, status, params_json FROM runs ORDER BY id").fetchall()
    before.close()
    with Home(tmp_path / "home") as h:
        kept = h.conn.execute("SELECT id, model, kind, status, params_json FROM runs ORDER BY id").fetchall()
        assert [tuple(r) for r in kept] == old_runs and old_runs
        assert h.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        v = h.registry.versions(old_runs[0][1])[0]
        assert runs.pipeline_run(h.conn, v.run_id).outcome is None
        with pytest.raises(sqlite3.IntegrityError):  # the versions still name runs that exist
            h.conn.execute("DELETE FROM runs WHERE id = ?", (v.run_id,))

    # tracking.db: a run with a child, params and tags, written under the first schema
    path = tmp_path / "tracking.db"
    conn = connect(path, TRACKING_MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO runs (id, model, name, kind, status, started_at) VALUES "
        "('p', 'loans', 'retrain', 'pipeline', 'succeeded', 1), ('c', 'loans', 't1', 'trial', 'failed', 2)"
    )
    conn.execute("UPDATE runs SET parent_id = 'p' WHERE id = 'c'")
    conn.execute("INSERT INTO params VALUES ('p', 'seed', '7')")
    conn.execute("INSERT INTO tags VALUES ('c', 'actor', 'cli')")
    conn.close()
    conn = connect(path, TRACKING_MIGRATIONS)
    assert [tuple(r) for r in conn.execute("SELECT id, parent_id, status FROM runs ORDER BY id")] == [
        ("c", "p", "failed"),
        ("p", None, "succeeded"),
    ]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.execute("UPDATE runs SET status = 'skipped' WHERE id = 'p'")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE runs SET status = 'done' WHERE id = 'p'")
    conn.close()

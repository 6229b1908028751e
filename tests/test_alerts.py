"""Alert rules over monitoring results, the alert table, actions (log, webhook, retrain), the closed loop."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest

from appliance.alerts import actions, records
from appliance.alerts.engine import on_monitor_results, version_references
from appliance.alerts.rules import evaluate, with_drift_score
from appliance.home import Home
from appliance.monitoring.store import RESULT_SCHEMA
from appliance.spec import load_spec
from appliance.spec.alerts import DEFAULT_ALERTS, AlertRule
from appliance.training import retrain
from tests.conftest import HookReceiver, register_metrics, sliced_spec, small_spec, webhook_alert

DAY0 = datetime(2026, 10, 16, tzinfo=UTC)


def results(*rows: tuple) -> pl.DataFrame:
    """Result rows like the monitoring job's: (day, check, feature, method, value, threshold, alert[, rows])."""
    out = []
    for day, check, feature, method, value, threshold, alert, *n in rows:
        start = DAY0 + timedelta(days=day)
        out.append(
            {
                "model": "fraud",
                "version": 1,
                "window_start": start,
                "window_end": start + timedelta(days=1),
                "check": check,
                "feature": feature,
                "method": method,
                "value": value,
                "threshold": threshold,
                "rows": n[0] if n else 3000,
                "alert": alert,
                "computed_at": DAY0.timestamp(),
            }
        )
    return pl.DataFrame(out, schema=RESULT_SCHEMA)


def rule(name: str) -> AlertRule:
    return next(r for r in DEFAULT_ALERTS if r.name == name)


@pytest.fixture
def home(tmp_path: Path):
    with Home(tmp_path / "home") as h:
        h.add_model(load_spec(small_spec(tmp_path)))
        yield h


def test_drift_score_is_the_worst_relative_excess():
    rows = with_drift_score(
        results(
            (0, "drift", "amount", "psi", 0.01, 0.02, False),
            (0, "drift", "hour", "ks", 0.02, 0.045, False),
            (1, "drift", "amount", "psi", 0.05, 0.02, True),
            (1, "drift", "amount", "ks", 0.06, 0.045, True),
            (1, "drift", "hour", "ks", 0.02, 0.045, False),
        )
    )
    scores = rows.filter(method="drift_score").sort("window_start")["value"].to_list()
    assert scores == pytest.approx([0.0, 1 - 0.02 / 0.05])
    fired = evaluate(rule("drift"), rows)
    assert [(f.target, f.window_start[:10], round(f.value, 3)) for f in fired] == [("*", "2026-10-17", 0.6)]


SAMPLE_REFERENCE = {1: {"auc": 0.90, "positive_rate": 0.027}}  # v1's held-out evaluation, like the sample's


def test_accuracy_reads_realized_auc_and_falls_back_to_the_estimate():
    rows = results(
        (0, "performance", "*", "auc", 0.90, 0.8, False),
        (0, "performance", "country=US", "auc", 0.70, 0.8, True),  # segments are not the model
        (1, "estimated", "*", "auc", 0.78, 0.8, True),
    )  # day 1 has no labels yet
    fired = evaluate(rule("accuracy-critical"), rows, SAMPLE_REFERENCE)
    assert [(f.target, f.value, f.window_start[:10]) for f in fired] == [("*", 0.78, "2026-10-17")]
    assert fired[0].message.startswith("estimated AUC 0.780 is 0.120 below v1's reference 0.900")
    labelled = pl.concat([rows, results((1, "performance", "*", "auc", 0.86, 0.8, False))])
    assert evaluate(rule("accuracy-critical"), labelled, SAMPLE_REFERENCE) == []  # the realized value wins
    few = results((0, "performance", "*", "auc", 0.5, 0.8, True, 50))
    assert evaluate(rule("accuracy-critical"), few, SAMPLE_REFERENCE) == []  # 50 labelled rows: not judged


def served_by(version: int, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(version=pl.lit(version, pl.Int64))


def test_accuracy_is_judged_against_the_serving_versions_own_reference():
    honest = {3: {"auc": 0.71, "positive_rate": 0.30}}  # a modest model, measured honestly on held-out rows
    low, critical = rule("accuracy-low"), rule("accuracy-critical")

    def fired(auc: float, rows: int = 3000, references=honest) -> list[str]:
        window = served_by(3, results((0, "performance", "*", "auc", auc, None, False, rows)))
        return [f.rule.name for r in (low, critical) for f in evaluate(r, window, references)]

    assert fired(0.70) == [] and fired(0.67) == []  # within 0.05 of its own 0.71: healthy, on day 1
    assert fired(0.62) == ["accuracy-low"]  # 0.09 below: a warning, no retrain
    assert fired(0.60) == ["accuracy-low", "accuracy-critical"]
    assert fired(0.89, references={3: {"auc": 0.95, "positive_rate": 0.30}}) == ["accuracy-low"]  # over 0.85, yet
    assert fired(0.62, references={1: {"auc": 0.71}}) == []  # no reference for v3: not judged
    assert fired(0.62, references={3: {"positive_rate": 0.3}}) == []
    # The margin widens with the window's noise: 200 labelled rows at 2.7 % positives hold ~5 frauds.
    rare = {3: {"auc": 0.71, "positive_rate": 0.027}}
    assert fired(0.59, rows=200, references=rare) == [] and fired(0.59, rows=3000, references=rare) == ["accuracy-low"]
    assert fired(0.30, rows=200, references=rare) == ["accuracy-low"]

    [firing] = evaluate(low, served_by(3, results((0, "performance", "*", "auc", 0.62, None, False))), honest)
    assert firing.message == "realized AUC 0.620 is 0.090 below v3's reference 0.710 (more than 0.050: warning)"
    assert firing.threshold == pytest.approx(0.66) and firing.reference == 0.71
    [noisy] = evaluate(low, served_by(3, results((0, "performance", "*", "auc", 0.55, None, False))), rare)
    assert noisy.message.startswith(
        "realized AUC 0.550 is 0.160 below v3's reference 0.710 (more than 0.098, "
        "3 standard errors at 3,000 labelled rows: warning)"
    )


def test_relative_rules_need_a_margin_and_noise_only_widens_auc():
    with pytest.raises(ValueError, match="margin"):
        AlertRule("r", "performance", "auc", "<", -0.05, relative_to="reference")
    with pytest.raises(ValueError, match="noise_z"):
        AlertRule("r", "performance", "f1", "<", 0.05, relative_to="reference", noise_z=3)
    with pytest.raises(ValueError, match="noise_z"):
        AlertRule("r", "performance", "auc", "<", 0.80, noise_z=3)
    rising = AlertRule("r", "performance", "log_loss", ">", 0.02, relative_to="reference")
    window = results((0, "performance", "*", "log_loss", 0.16, None, False))
    [f] = evaluate(rising, window, {1: {"log_loss": 0.13}})
    assert f.message.startswith("realized log_loss 0.160 is 0.030 above v1's reference 0.130")
    assert evaluate(rising, window, {1: {"log_loss": 0.15}}) == []


def _register(home: Home, metrics: dict) -> int:
    """A version of 'fraud' with these evaluation metrics (no artifacts: the alert rules read only metrics)."""
    home.conn.execute(
        "INSERT OR IGNORE INTO runs (id, model, kind, status, started_at) "
        "VALUES ('r-honest', 'fraud', 'train', 'succeeded', 0)"
    )
    return register_metrics(home, "fraud", "r-honest", metrics)


def test_a_versions_reference_comes_from_the_registry(home: Home):
    version = _register(home, {"auc": 0.71, "positive_rate": 0.30, "rows": 30000.0})
    healthy = served_by(version, results((0, "performance", "*", "auc", 0.70, 0.8, True)))
    assert on_monitor_results(home, "fraud", healthy) == []  # absolute 0.85 would have fired
    worse = served_by(version, results((1, "performance", "*", "auc", 0.62, 0.8, True)))
    [alert] = on_monitor_results(home, "fraud", worse)
    assert (alert.rule, alert.value, alert.threshold) == ("accuracy-low", 0.62, pytest.approx(0.66))
    assert alert.message.startswith(f"realized AUC 0.620 is 0.090 below v{version}'s reference 0.710")
    unknown = served_by(version + 1, results((2, "performance", "*", "auc", 0.10, 0.8, True)))
    assert on_monitor_results(home, "fraud", unknown) == []  # no such version: not judged


def test_without_a_recorded_metric_the_stored_monitoring_reference_is_scored(home_dir: Path):
    with Home(home_dir) as h:
        v1 = h.registry.version("fraud", 1)
        bare = register_metrics(h, "fraud", v1.run_id, {}, v1.artifact_sha256, v1.feature_schema)
        window = served_by(bare, results((0, "performance", "*", "auc", 0.5, 0.8, True)))
        references = version_references(h, "fraud", window, DEFAULT_ALERTS)
    # v1's run stored its evaluation rows with their scores: the same rows its recorded AUC came from
    assert references[bare]["auc"] == pytest.approx(v1.metrics["auc"], abs=1e-4)
    assert references[bare]["positive_rate"] == pytest.approx(v1.metrics["positive_rate"])
    [firing] = evaluate(rule("accuracy-low"), window, references)
    assert f"below v{bare}'s reference {v1.metrics['auc']:.3f}" in firing.message


def test_an_explicit_absolute_rule_in_the_spec_still_works(tmp_path: Path):
    spec = small_spec(tmp_path)
    spec.write_text(
        spec.read_text()
        + """
[[alerts]]
name = "auc-floor"
check = "performance"
method = "auc"
op = "<"
threshold = 0.85
feature = "*"

[[alerts]]
name = "auc-drop"
check = "performance"
method = "auc"
op = "<"
threshold = 0.02
feature = "*"
relative_to = "reference"
"""
    )
    with Home(tmp_path / "home") as h:
        h.add_model(load_spec(spec))
        assert [r.name for r in h.spec("fraud").alerts] == ["auc-floor", "auc-drop"]  # the defaults are replaced
        fired = on_monitor_results(h, "fraud", results((0, "performance", "*", "auc", 0.80, 0.8, True)))
    assert [(a.rule, a.message, a.threshold) for a in fired] == [("auc-floor", "auc = 0.8 < 0.85 (warning)", 0.85)]


def test_for_windows_needs_consecutive_breaches():
    streak = AlertRule("p99", "serving", "p99_ms", ">", 200, for_windows=2)
    assert (
        evaluate(
            streak,
            results(
                (0, "serving", None, "p99_ms", 250.0, 200, True), (1, "serving", None, "p99_ms", 150.0, 200, False)
            ),
        )
        == []
    )
    fired = evaluate(
        streak,
        results((1, "serving", None, "p99_ms", 250.0, 200, True), (2, "serving", None, "p99_ms", 260.0, 200, True)),
    )
    assert [f.value for f in fired] == [260.0]


def test_one_open_alert_per_rule_and_target_until_resolved(home: Home):
    missing = results(
        (0, "quality", "amount", "missing_rate", 0.25, 0.1, True),
        (0, "quality", "hour", "missing_rate", 0.01, 0.1, False),
        (0, "pipeline", None, "failure_streak", 3, 3, True),
    )
    first = on_monitor_results(home, "fraud", missing)
    assert sorted((a.rule, a.target, a.count) for a in first) == [
        ("missing-values", "amount", 1),
        ("pipeline-failing", "*", 1),
    ]
    again = on_monitor_results(home, "fraud", results((1, "quality", "amount", "missing_rate", 0.3, 0.1, True)))
    assert [(a.id, a.count, a.value, a.window_start[:10]) for a in again] == [
        (first[0].id if first[0].rule == "missing-values" else first[1].id, 2, 0.3, "2026-10-17")
    ]
    alert = again[0]
    assert records.acknowledge(home.conn, alert.id, "ops").status == "acknowledged"
    assert (
        on_monitor_results(home, "fraud", results((2, "quality", "amount", "missing_rate", 0.3, 0.1, True)))[0].id
        == alert.id
    )  # acknowledged is still unresolved
    records.resolve(home.conn, alert.id, "ops")
    reopened = on_monitor_results(home, "fraud", results((3, "quality", "amount", "missing_rate", 0.4, 0.1, True)))
    assert reopened[0].id != alert.id and reopened[0].count == 1
    assert len(records.list_alerts(home.conn, "fraud")) == 2
    assert len(records.list_alerts(home.conn, "fraud", include_resolved=True)) == 3
    trail = [(e.action, e.actor) for e in home.registry.audit_log("fraud") if e.action.startswith("alert_")]
    assert ("alert_resolved", "ops") in trail and ("alert_acknowledged", "ops") in trail
    assert sum(1 for action, _ in trail if action == "alert_opened") == 3


def test_ack_and_resolve_from_the_cli(home: Home, tmp_path: Path):
    [alert] = on_monitor_results(home, "fraud", results((0, "serving", None, "log_overflow", 12, 0, True)))
    assert alert.severity == "critical"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "appliance", "--home", str(home.root), "alerts", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("list", "--model", "fraud")
    assert listed.returncode == 0 and "prediction-log-overflow" in listed.stdout
    assert cli("ack", str(alert.id)).returncode == 0
    again = cli("ack", str(alert.id))
    assert again.returncode == 1 and again.stderr.startswith("error: alert") and "Traceback" not in again.stderr
    assert cli("resolve", str(alert.id)).returncode == 0
    assert "no unresolved alerts" in cli("list").stdout
    shown = cli("show", str(alert.id))
    assert "resolved by cli" in shown.stdout and "acknowledged by cli" in shown.stdout
    assert cli("show", "999").stderr.startswith("error: no alert 999")


class FlakyReceiver(HookReceiver):
    """Fails the first two deliveries with 503, accepts the third."""

    bodies: ClassVar[list[dict]] = []

    def status(self) -> int:
        return 503 if len(self.bodies) <= 2 else 200


def test_webhook_retries_with_backoff_until_delivered(tmp_path: Path):
    spec = small_spec(tmp_path)
    with webhook_alert(spec, FlakyReceiver, "latency", "p99_ms", 200), Home(tmp_path / "home") as h:
        h.add_model(load_spec(spec))
        [alert] = on_monitor_results(h, "fraud", results((0, "serving", None, "p99_ms", 450.0, 200, True)))
        assert actions.wait_for_actions(30)
        [action] = records.alert(h.conn, alert.id).actions
    assert [b["alert"] for b in FlakyReceiver.bodies] == [alert.id] * 3
    assert FlakyReceiver.bodies[-1]["message"].startswith("p99_ms = 450")
    assert (action.action, action.status, action.detail["attempts"], action.detail["failures"]) == (
        "webhook",
        "succeeded",
        3,
        ["HTTP 503", "HTTP 503"],
    )


def test_webhook_gives_up_after_bounded_attempts():
    delivered, failures = actions.post_json("http://127.0.0.1:9/nothing", {}, attempts=3, backoff_s=0.01)
    assert not delivered and len(failures) == 3


def test_retrain_action_then_the_policy_approve_or_canary(tmp_path: Path):
    from appliance.deployment import deployments
    from appliance.training.pipeline import train

    spec_path = sliced_spec(tmp_path, days=12, eval_days=3, **{'on_retrain = "canary"': 'on_retrain = "approve"'})
    degraded = results((0, "performance", "*", "auc", 0.62, 0.8, True))
    with Home(tmp_path / "home") as h:
        spec = load_spec(spec_path)
        h.add_model(spec)
        train(h, spec)
        h.registry.promote("fraud", 1)
        # each retrain below has something new to learn from (here another seed): one with nothing new
        # registers nothing (tests/test_retrain_nothing_new.py)
        spec_path.write_text(spec_path.read_text().replace("seed = 7", "seed = 8"))

        opened = on_monitor_results(h, "fraud", degraded)
        assert sorted(a.rule for a in opened) == ["accuracy-critical", "accuracy-low"]
        critical = next(a for a in opened if a.rule == "accuracy-critical")
        assert on_monitor_results(h, "fraud", degraded)  # fires again while the retrain runs: no second one
        assert actions.wait_for_actions(300)
        [retrain] = records.alert(h.conn, critical.id).actions
        assert (retrain.action, retrain.status, retrain.detail["version"]) == ("retrain", "succeeded", 2)
        assert "waits for approval" in retrain.detail["outcome"]
        assert h.registry.alias("fraud", "candidate") == 2 and h.registry.alias("fraud", "production") == 1
        assert deployments.latest(h, "fraud") is None
        assert [e.actor for e in h.registry.audit_log("fraud") if e.action == "retrain_awaits_approval"] == [
            f"alert:{critical.id}"
        ]
        assert len(h.registry.versions("fraud")) == 2  # one pipeline run for the two firings

        spec_path.write_text(
            spec_path.read_text()
            .replace('on_retrain = "approve"', 'on_retrain = "canary"')
            .replace("seed = 8", "seed = 9")
        )
        records.resolve(h.conn, critical.id, "ops")
        again = next(a for a in on_monitor_results(h, "fraud", degraded) if a.rule == "accuracy-critical")
        assert actions.wait_for_actions(300)
        [retrain] = records.alert(h.conn, again.id).actions
        assert (retrain.status, retrain.detail["version"]) == ("succeeded", 3), retrain.detail
        d = deployments.latest(h, "fraud")
        assert (d.strategy, d.status, d.candidate_version, d.baseline_version, d.id) == (
            "canary",
            "running",
            3,
            1,
            retrain.detail["deployment"],
        )
        trail = [e.action for e in h.registry.audit_log("fraud") if e.actor == f"alert:{again.id}"]
        assert trail[:2] == ["retrain_canary_started", "deployment_started"]


def test_a_rejected_retrain_is_retried_only_while_attempts_remain(home: Home):
    import msgspec

    [alert] = on_monitor_results(home, "fraud", results((0, "pipeline", None, "failure_streak", 4, 3, True)))
    critical = rule("accuracy-critical")

    def tried(*statuses: str) -> records.Alert:
        return msgspec.structs.replace(
            alert,
            actions=[records.AlertAction(i, alert.id, "retrain", s, 0.0, 1.0, {}) for i, s in enumerate(statuses)],
        )

    assert not actions.retry_failed_retrain(home.root, critical, tried())  # none tried yet
    assert not actions.retry_failed_retrain(home.root, critical, tried("succeeded"))  # it worked
    assert not actions.retry_failed_retrain(home.root, critical, tried("failed", "failed", "failed"))
    assert not actions.retry_failed_retrain(home.root, rule("drift"), tried("failed"))  # not a retrain rule
    assert retrain.claim("fraud")  # one is under way
    try:
        assert not actions.retry_failed_retrain(home.root, critical, tried("failed"))
    finally:
        retrain.release("fraud")


def test_alerts_over_the_admin_api(server):
    import time

    from appliance.gateway.keys import create_key

    with Home(server.home) as h:
        [alert] = on_monitor_results(h, "fraud", results((0, "quality", "amount", "missing_rate", 0.4, 0.1, True)))
        admin = {"authorization": f"Bearer {create_key(h.conn, ['admin'])[1]}"}
    c = server.client
    deadline = time.monotonic() + 10
    while (listed := c.get("/v1/alerts", params={"model": "fraud"}, headers=admin)).status_code != 200:
        assert time.monotonic() < deadline, listed.text  # the server picks the new key up within a tick
        time.sleep(0.05)
    assert [(a["id"], a["rule"], a["status"]) for a in listed.json()] == [(alert.id, "missing-values", "open")]
    assert c.get("/v1/alerts").status_code == 401  # admin only
    acked = c.post(f"/v1/alerts/{alert.id}/ack", headers=admin)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"].startswith("api:")
    assert c.post(f"/v1/alerts/{alert.id}/resolve", headers=admin).json()["status"] == "resolved"
    again = c.post(f"/v1/alerts/{alert.id}/resolve", headers=admin)
    assert again.status_code == 409 and "already resolved" in again.json()["detail"]
    assert c.post("/v1/alerts/999/ack", headers=admin).status_code == 404
    assert c.get("/v1/alerts", headers=admin).json() == []
    assert len(c.get("/v1/alerts", params={"all": "true"}, headers=admin).json()) == 1

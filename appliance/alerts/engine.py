"""Alert evaluation after each monitoring run: the hook the monitoring job calls with its new rows."""

from __future__ import annotations

import polars as pl

from appliance.alerts import records
from appliance.alerts.actions import retry_failed_retrain, take_action
from appliance.alerts.records import Alert
from appliance.alerts.rules import evaluate, with_drift_score
from appliance.home import Home


def on_monitor_results(home: Home, model: str, new_rows: pl.DataFrame) -> list[Alert]:
    """Judge a monitoring run's result rows against the model's alert rules.

    A rule that fires opens an alert (and runs its action) or, when the rule and target already have an
    unresolved one, updates that alert's last_seen, count and value (and retries a retrain the gates
    rejected, on the labels that arrived since). Returns the alerts opened or updated."""
    if new_rows.height == 0:
        return []
    rules = home.spec(model).alerts
    rows = with_drift_score(new_rows)
    touched = []
    for rule in rules:
        for firing in evaluate(rule, rows):
            alert, opened = records.record_firing(home.conn, model, firing)
            if opened:
                take_action(home.root, rule, alert)
            else:
                retry_failed_retrain(home.root, rule, alert)
            touched.append(alert)
    return touched


def install() -> None:
    """Register ``on_monitor_results`` with the monitoring job (once per process)."""
    from appliance.monitoring import store

    if on_monitor_results not in store.after_monitor:
        store.after_monitor.append(on_monitor_results)

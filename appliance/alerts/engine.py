"""Alert evaluation after each monitoring run: the monitor job (``appliance.scheduler.jobs``) calls
``on_monitor_results`` with the rows the run wrote, whoever started it (the scheduler, `appliance jobs run`,
the dashboard's "run now", the demo's replay)."""

from __future__ import annotations

import logging
import math

import polars as pl

from appliance.alerts import records
from appliance.alerts.actions import retry_failed_retrain, take_action
from appliance.alerts.records import Alert
from appliance.alerts.rules import evaluate, with_drift_score
from appliance.errors import NotFound
from appliance.home import Home
from appliance.spec.alerts import CLASS_SHARE, AlertRule, task_alerts
from storage.errors import StorageError

log = logging.getLogger("appliance.alerts")
_unjudged: set[tuple[str, int, str]] = set()  # (model, version, rule) already logged as without a reference


def on_monitor_results(home: Home, model: str, new_rows: pl.DataFrame) -> list[Alert]:
    """Judge a monitoring run's result rows against the model's alert rules.

    A rule that fires opens an alert (and runs its action) or, when the rule and target already have an
    unresolved one, updates that alert's last_seen, count and value (and retries a retrain the gates
    rejected, on the labels that arrived since). Returns the alerts opened or updated."""
    if new_rows.height == 0:
        return []
    rules = model_alerts(home, model)
    rows = with_drift_score(new_rows)
    references = version_references(home, model, rows, rules)
    touched = []
    for rule in rules:
        for firing in evaluate(rule, rows, references):
            alert, opened = records.record_firing(home.conn, model, firing)
            if opened:
                take_action(home.root, rule, alert)
            else:
                retry_failed_retrain(home.root, rule, alert)
            touched.append(alert)
    return touched


def model_alerts(home: Home, model: str) -> list[AlertRule]:
    """The model's alert rules, the default accuracy rules watching the metric that judges its task."""
    from appliance.data.declared import model_task

    spec = home.spec(model)
    return task_alerts(spec.alerts, model_task(spec).kind, spec.metric)


def version_references(
    home: Home, model: str, rows: pl.DataFrame, rules: list[AlertRule]
) -> dict[int, dict[str, float]]:
    """The reference metrics of the versions in ``rows`` that relative rules compare with: each version's
    held-out evaluation metrics as the registry recorded them, or else recomputed from the monitoring
    reference it stored (its evaluation rows' out-of-sample scores and labels)."""
    relative = [r for r in rules if r.relative_to == "reference"]
    if not relative or "version" not in rows.columns:
        return {}
    out = {}
    for version in rows["version"].drop_nulls().unique().to_list():
        try:
            recorded = home.registry.version(model, version).metrics
        except NotFound:
            recorded = {}
        metrics = {k: float(v) for k, v in recorded.items() if isinstance(v, int | float)}
        # Macro F1's noise model needs the classes' shares, which the stored reference rows give.
        wants_shares = any(r.method == "macro_f1" and r.noise_z for r in relative) and not any(
            k.startswith(CLASS_SHARE) for k in metrics
        )
        if wants_shares or any(not math.isfinite(metrics.get(r.method, math.nan)) for r in relative):
            metrics = _stored_reference_metrics(home, model, version) | metrics
        for rule in relative:
            if not math.isfinite(metrics.get(rule.method, math.nan)) and (model, version, rule.name) not in _unjudged:
                _unjudged.add((model, version, rule.name))
                log.warning(
                    "alert rule '%s' judges against the reference, but v%d of '%s' records no %s: its "
                    "windows are not judged by it",
                    rule.name,
                    version,
                    model,
                    rule.method,
                    extra={"model": model, "version": version, "rule": rule.name},
                )
        out[version] = metrics
    return out


def _stored_reference_metrics(home: Home, model: str, version: int) -> dict[str, float]:
    """The task's metrics of a version's stored monitoring reference; empty if it has none."""
    from appliance.data.declared import model_task
    from appliance.monitoring.reference import load_reference, reference_metrics

    try:
        spec = home.spec(model)
        reference = load_reference(home, model, version)
    except (NotFound, StorageError):  # none stored, or unreadable: the rules say so and judge nothing
        return {}
    return reference_metrics(reference, spec.target.column, model_task(spec))

"""The closed loop: an alert's retrain (fresh labelled data, the newest days held out) → the pipeline and
its gates → the spec's policy (``[deployment] on_retrain``): leave the candidate for a human to approve,
or start a canary that the server's canary analysis promotes or rolls back. A retrain with nothing new to learn
from (no new labels, no new batch since a version trained on the same) registers nothing: the action is
'skipped', saying why, and no canary starts. Each step is recorded with the alert and audited."""

from __future__ import annotations

import logging
from pathlib import Path

from appliance.alerts import records
from appliance.alerts.records import Alert
from appliance.errors import ApplianceError
from appliance.home import Home
from storage.errors import StorageError

log = logging.getLogger("appliance.alerts")


def retrain_for_alert(root: Path, alert: Alert) -> None:
    """Retrain the alert's model in a worker process and apply the spec's policy to the result."""
    actor = f"alert:{alert.id}"
    with Home(root) as home:
        action = records.start_action(home.conn, alert.id, "retrain")
        spec = home.spec(alert.model)
    status, detail, what, version = _retrain(root, alert, spec.deployment.on_retrain, actor)
    log.warning(
        "alert retrain of %s: %s",
        alert.model,
        detail.get("outcome") or detail.get("error"),
        extra={"model": alert.model, "version": version, "retrain": what},
    )
    with Home(root) as home:
        records.finish_action(home.conn, action, status, detail, audit=(actor, what, alert.model, version))


def _retrain(root: Path, alert: Alert, on_retrain: str, actor: str) -> tuple[str, dict, str, int | None]:
    """Run the retrain and the policy; how the action ended: its status, detail, audited event and version."""
    from appliance.deployment import deployments
    from appliance.training.pipeline import NothingNew
    from appliance.training.worker import train_in_worker

    try:  # a retrain ingests the labels that came back since the last one and holds out the newest days
        outcome = train_in_worker(root, alert.model, actor=actor, retrain=True)
    except (ApplianceError, StorageError, RuntimeError) as e:
        return "failed", {"error": str(e)}, "retrain_failed", None
    if isinstance(outcome, NothingNew):
        skipped = {
            "run_id": outcome.run_id,
            "learnt_before": outcome.learnt_before,
            "fresh_rows": outcome.feedback_rows,
            "outcome": outcome.message,
        }
        return "skipped", skipped, "retrain_skipped", None
    version = outcome.version.version
    detail = {
        "run_id": outcome.run_id,
        "version": version,
        "gates_passed": outcome.gates.passed,
        "fresh_rows": outcome.feedback_rows,
        "evaluated_from": outcome.cutoff[:10],
    }
    if not outcome.gates.passed:
        failed = [c.name for c in outcome.gates.checks if not c.passed]
        rejected = f"v{version} failed its gates: {', '.join(failed)}"
        return "failed", detail | {"outcome": rejected}, "retrain_rejected", version
    if on_retrain == "canary":
        try:
            with Home(root) as home:
                d = deployments.start(home, alert.model, "canary", version, actor=actor)
        except ApplianceError as e:
            refused = f"v{version} passed its gates; canary not started: {e}"
            return "failed", detail | {"outcome": refused}, "retrain_canary_refused", version
        started = (
            f"v{version} passed its gates; canary deployment {d.id} started at {d.traffic_percent:g} % — "
            "canary analysis promotes or rolls it back"
        )
        return "succeeded", detail | {"deployment": d.id, "outcome": started}, "retrain_canary_started", version
    waits = (
        f"v{version} passed its gates and waits for approval: `appliance promote {alert.model} {version}` "
        f"or `appliance deploy {alert.model} start canary --version {version}`"
    )
    return "succeeded", detail | {"outcome": waits}, "retrain_awaits_approval", version

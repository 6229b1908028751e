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
    from appliance.deployment import deployments
    from appliance.training.pipeline import NothingNew
    from appliance.training.worker import train_in_worker

    actor = f"alert:{alert.id}"
    with Home(root) as home:
        action = records.start_action(home.conn, alert.id, "retrain")
        spec = home.spec(alert.model)
    try:  # a retrain ingests the labels that came back since the last one and holds out the newest days
        outcome = train_in_worker(root, alert.model, actor=actor, retrain=True)
    except (ApplianceError, StorageError, RuntimeError) as e:
        _finish(root, action, "failed", {"error": str(e)}, actor, "retrain_failed", alert.model, None)
        return
    if isinstance(outcome, NothingNew):
        _finish(
            root,
            action,
            "skipped",
            {
                "run_id": outcome.run_id,
                "learnt_before": outcome.learnt_before,
                "fresh_rows": outcome.feedback_rows,
                "outcome": outcome.message,
            },
            actor,
            "retrain_skipped",
            alert.model,
            None,
        )
        return
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
        _finish(
            root,
            action,
            "failed",
            detail | {"outcome": f"v{version} failed its gates: {', '.join(failed)}"},
            actor,
            "retrain_rejected",
            alert.model,
            version,
        )
        return
    if spec.deployment.on_retrain == "canary":
        try:
            with Home(root) as home:
                d = deployments.start(home, alert.model, "canary", version, actor=actor)
        except ApplianceError as e:
            _finish(
                root,
                action,
                "failed",
                detail | {"outcome": f"v{version} passed its gates; canary not started: {e}"},
                actor,
                "retrain_canary_refused",
                alert.model,
                version,
            )
            return
        _finish(
            root,
            action,
            "succeeded",
            detail
            | {
                "deployment": d.id,
                "outcome": (
                    f"v{version} passed its gates; canary deployment {d.id} started at {d.traffic_percent:g} % — "
                    "canary analysis promotes or rolls it back"
                ),
            },
            actor,
            "retrain_canary_started",
            alert.model,
            version,
        )
        return
    _finish(
        root,
        action,
        "succeeded",
        detail
        | {
            "outcome": (
                f"v{version} passed its gates and waits for approval: `appliance promote {alert.model} {version}` "
                f"or `appliance deploy {alert.model} start canary --version {version}`"
            )
        },
        actor,
        "retrain_awaits_approval",
        alert.model,
        version,
    )


def _finish(
    root: Path, action: int, status: str, detail: dict, actor: str, what: str, model: str, version: int | None
) -> None:
    log.warning(
        "alert retrain of %s: %s",
        model,
        detail.get("outcome") or detail.get("error"),
        extra={"model": model, "version": version, "retrain": what},
    )
    with Home(root) as home:
        records.finish_action(home.conn, action, status, detail, audit=(actor, what, model, version))

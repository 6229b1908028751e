"""Retrains started in the background (the admin API, an alert's action): at most one per model, each a
pipeline run in a worker process that also learns from the labelled predictions (``pipeline.train``'s
``retrain``), so the caller answers at once and the run is watched by its id."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

from appliance.errors import ApplianceError, Conflict
from appliance.home import Home
from appliance.training.run_lock import lock_holder
from storage.errors import StorageError

log = logging.getLogger(__name__)

_under_way: dict[str, str | None] = {}  # models with a retrain under way in this process: its run id if known
_guard = threading.Lock()


def claim(model: str, run_id: str | None = None) -> bool:
    """Mark a model's retrain as under way in this process; False if one already is."""
    with _guard:
        if model in _under_way:
            return False
        _under_way[model] = run_id
        return True


def release(model: str) -> None:
    with _guard:
        _under_way.pop(model, None)


def starting(model: str, run_id: str) -> bool:
    """Whether ``run_id`` is a retrain this process started whose worker has not recorded the run yet."""
    with _guard:
        return _under_way.get(model) == run_id


def start_retrain(root: Path, model: str, actor: str, reason: str = "") -> str:
    """Start a retrain of ``model`` on a thread and return its run id (audited at start and end);
    Conflict if the model is training already, here or in another process."""
    run_id = uuid.uuid4().hex
    holder = lock_holder(root, model)
    if holder is not None or not claim(model, run_id):
        who = f" (run {holder['run_id'][:8]} in process {holder['pid']})" if holder else ""
        raise Conflict(f"model '{model}' is already training{who}; wait for it to finish (see `appliance runs list`)")
    try:
        with Home(root) as home:
            home.registry.audit(actor, "retrain_started", model, None, {"run_id": run_id, "reason": reason})
    except BaseException:
        release(model)
        raise
    threading.Thread(target=_retrain, args=(root, model, actor, run_id), name=f"retrain-{model}", daemon=True).start()
    return run_id


def _retrain(root: Path, model: str, actor: str, run_id: str) -> None:
    from appliance.training.pipeline import NothingNew
    from appliance.training.worker import train_in_worker

    try:
        try:
            outcome = train_in_worker(root, model, actor=actor, retrain=True, new_run_id=run_id)
        except (ApplianceError, StorageError, RuntimeError) as e:
            log.error("retrain %s of %s failed: %s", run_id[:8], model, e, extra={"model": model, "run": run_id})
            with Home(root) as home:
                home.registry.audit(actor, "retrain_failed", model, None, {"run_id": run_id, "error": str(e)})
            return
        if isinstance(outcome, NothingNew):  # the run is recorded as skipped, with the same reason
            with Home(root) as home:
                home.registry.audit(
                    actor,
                    "retrain_finished",
                    model,
                    None,
                    {
                        "run_id": run_id,
                        "status": "skipped",
                        "reason": outcome.message,
                        "learnt_before": outcome.learnt_before,
                        "fresh_rows": outcome.feedback_rows,
                    },
                )
            return
        v = outcome.version
        with Home(root) as home:
            home.registry.audit(
                actor,
                "retrain_finished",
                model,
                v.version,
                {
                    "run_id": run_id,
                    "status": v.status,
                    "gates_passed": outcome.gates.passed,
                    "fresh_rows": outcome.feedback_rows,
                },
            )
    finally:
        release(model)

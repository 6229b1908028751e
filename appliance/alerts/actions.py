"""What an alert does when it opens: a structured log line, a webhook, or a retrain.

Webhooks and retrains run in background threads, so the monitoring job that raised the alert never
waits on a slow receiver or a training run; each records its outcome with the alert.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from appliance.alerts import records
from appliance.alerts.records import Alert
from appliance.home import Home
from appliance.spec.alerts import AlertRule
from appliance.training.retrain import claim, release

log = logging.getLogger("appliance.alerts")

RETRAINS_PER_ALERT = 3  # an alert that keeps firing retries a rejected retrain, on fresher data, this often
WEBHOOK_ATTEMPTS = 5  # one try and four retries …
WEBHOOK_BACKOFF_S = 0.5  # … after 0.5, 1, 2 and 4 s (doubling): about 7.5 s at most, plus timeouts
WEBHOOK_TIMEOUT_S = 5.0
ACTIONS_WAIT_S = 600  # how long a process that ends waits for the actions it started (a retrain)

_threads: set[threading.Thread] = set()
_guard = threading.Lock()


def take_action(root: Path, rule: AlertRule, alert: Alert) -> None:
    """Run the rule's action for a newly opened alert; never blocks on the network or on training."""
    log.warning(
        "alert %d opened: %s %s on %s",
        alert.id,
        rule.severity,
        rule.name,
        alert.model,
        extra={
            "alert": alert.id,
            "rule": rule.name,
            "model": alert.model,
            "target": alert.target,
            "severity": rule.severity,
            "value": alert.value,
            "threshold": alert.threshold,
            "window_end": alert.window_end,
            "alert_message": alert.message,
        },
    )
    if rule.action == "webhook":
        _background(f"webhook-{alert.id}", _webhook, root, rule.url, alert)
    elif rule.action == "retrain":
        if not claim(alert.model):
            with Home(root) as home:
                records.start_action(
                    home.conn,
                    alert.id,
                    "retrain",
                    "skipped",
                    {"reason": f"a retrain of '{alert.model}' is already under way"},
                )
            return
        _background(f"retrain-{alert.model}", _retrain, root, alert)


def retry_failed_retrain(root: Path, rule: AlertRule, alert: Alert) -> bool:
    """On a repeat firing: retrain again (on the labels that arrived since) if the alert's last retrain
    failed or was rejected by the gates, up to RETRAINS_PER_ALERT times; True if one started. A retrain
    skipped (one under way, or nothing new to learn from yet) is no try: it trained nothing."""
    tries = [a for a in alert.actions if a.action == "retrain" and a.status != "skipped"]
    if rule.action != "retrain" or not tries or tries[-1].status != "failed" or len(tries) >= RETRAINS_PER_ALERT:
        return False
    if not claim(alert.model):
        return False
    _background(f"retrain-{alert.model}", _retrain, root, alert)
    return True


def wait_for_actions(timeout: float) -> bool:
    """Wait until the background actions started so far are done; False if some still run."""
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        thread.join(max(deadline - time.monotonic(), 0))
    return not any(t.is_alive() for t in _threads)


def finish_actions(say: Callable[[str], None]) -> bool:
    """Before this process ends: wait, up to ACTIONS_WAIT_S, for the actions it started (they run on its
    threads and would end with it), saying so; False if some still run."""
    if wait_for_actions(0):
        return True
    say("waiting for the alerts' actions (a webhook, a retrain) to finish")
    if wait_for_actions(ACTIONS_WAIT_S):
        return True
    say(f"stopped waiting after {ACTIONS_WAIT_S} s: the actions still running end with this process")
    return False


def post_json(
    url: str, body: dict, attempts: int = WEBHOOK_ATTEMPTS, backoff_s: float = WEBHOOK_BACKOFF_S
) -> tuple[bool, list[str]]:
    """POST ``body`` as JSON, retrying failures with exponential backoff; (delivered, one line per failure)."""
    data = json.dumps(body).encode()
    failures: list[str] = []
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                response.read()
            return True, failures
        except urllib.error.HTTPError as e:
            failures.append(f"HTTP {e.code}")
        except (urllib.error.URLError, OSError) as e:
            failures.append(str(getattr(e, "reason", e)))
    return False, failures


def _background(name: str, target, *args) -> None:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    with _guard:
        _threads.add(thread)
    thread.start()


def _webhook(root: Path, url: str, alert: Alert) -> None:
    with Home(root) as home:
        action = records.start_action(home.conn, alert.id, "webhook", detail={"url": url})
    delivered, failures = post_json(url, _payload(alert))
    detail = {"url": url, "attempts": len(failures) + delivered, "failures": failures}
    if not delivered:
        log.error(
            "alert %d: webhook %s failed after %d attempts",
            alert.id,
            url,
            len(failures),
            extra={"alert": alert.id, "failures": failures},
        )
    with Home(root) as home:
        records.finish_action(home.conn, action, "succeeded" if delivered else "failed", detail)


def _retrain(root: Path, alert: Alert) -> None:
    from appliance.alerts.retraining import retrain_for_alert

    try:
        retrain_for_alert(root, alert)
    finally:
        release(alert.model)


def _payload(alert: Alert) -> dict:
    return {
        "alert": alert.id,
        "rule": alert.rule,
        "model": alert.model,
        "target": alert.target,
        "severity": alert.severity,
        "status": alert.status,
        "message": alert.message,
        "value": alert.value,
        "threshold": alert.threshold,
        "window_start": alert.window_start,
        "window_end": alert.window_end,
        "first_seen": alert.first_seen,
    }

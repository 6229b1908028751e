"""Alerts in metadata.db: one unresolved alert per (rule, model, target), acknowledged and resolved by
people, with the actions each one took. Every change is audited in the same transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Literal

import msgspec

from appliance.alerts.rules import Firing
from appliance.errors import Conflict, NotFound
from appliance.registry import Registry
from storage.database import MAX_INTEGER, transaction


class AlertAction(msgspec.Struct, frozen=True):
    id: int
    alert_id: int
    action: str
    status: str  # running | succeeded | failed | skipped
    started_at: float
    ended_at: float | None
    detail: dict


class Alert(msgspec.Struct, frozen=True):
    id: int
    rule: str
    model: str
    target: str
    severity: str
    action: str
    status: str  # open | acknowledged | resolved
    message: str
    value: float | None
    threshold: float  # what the value was compared with (a relative rule: its reference ∓ margin)
    window_start: str | None
    window_end: str | None
    count: int
    first_seen: float
    last_seen: float
    acknowledged_by: str | None
    acknowledged_at: float | None
    resolved_by: str | None
    resolved_at: float | None
    actions: list[AlertAction] = []


def record_firing(conn: sqlite3.Connection, model: str, firing: Firing) -> tuple[Alert, bool]:
    """Open an alert for a firing, or update the unresolved one (last_seen, count, latest value).
    Returns the alert and whether it was newly opened."""
    rule, now = firing.rule, time.time()
    value = firing.value if firing.value == firing.value else None  # NaN → NULL
    threshold = firing.threshold if firing.threshold == firing.threshold else rule.threshold
    with transaction(conn):
        row = conn.execute(
            "SELECT id FROM alerts WHERE rule = ? AND model = ? AND target = ? AND status != 'resolved'",
            (rule.name, model, firing.target),
        ).fetchone()
        if row is not None:
            conn.execute(
                "UPDATE alerts SET count = count + 1, last_seen = ?, value = ?, threshold = ?, message = ?, "
                "window_start = ?, window_end = ? WHERE id = ?",
                (now, value, threshold, firing.message, firing.window_start, firing.window_end, row[0]),
            )
            return alert(conn, row[0]), False
        cur = conn.execute(
            "INSERT INTO alerts (rule, model, target, severity, action, status, message, value, threshold, "
            "window_start, window_end, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)",
            (
                rule.name,
                model,
                firing.target,
                rule.severity,
                rule.action,
                firing.message,
                value,
                threshold,
                firing.window_start,
                firing.window_end,
                now,
                now,
            ),
        )
        Registry(conn).audit(
            "monitoring",
            "alert_opened",
            model,
            None,
            {
                "alert": cur.lastrowid,
                "rule": rule.name,
                "target": firing.target,
                "severity": rule.severity,
                "message": firing.message,
            },
        )
    return alert(conn, cur.lastrowid), True


def alert(conn: sqlite3.Connection, alert_id: int) -> Alert:
    """One alert with its actions; an unknown id is NotFound."""
    row = (
        conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if 0 < alert_id <= MAX_INTEGER
        else None
    )
    if row is None:
        raise NotFound(f"no alert {alert_id}; see `appliance alerts list --all`")
    actions = [
        _action(a) for a in conn.execute("SELECT * FROM alert_actions WHERE alert_id = ? ORDER BY id", (alert_id,))
    ]
    return Alert(**dict(row), actions=actions)


def list_alerts(
    conn: sqlite3.Connection, model: str | None = None, include_resolved: bool = False, limit: int = 200
) -> list[Alert]:
    """Newest alerts first: the unresolved ones, or all with ``include_resolved``."""
    where, params = [], []
    if model is not None:
        where.append("model = ?")
        params.append(model)
    if not include_resolved:
        where.append("status != 'resolved'")
    sql = "SELECT id FROM alerts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
    return [alert(conn, r[0]) for r in conn.execute(sql, (*params, limit)).fetchall()]


def acknowledge(conn: sqlite3.Connection, alert_id: int, actor: str) -> Alert:
    """Someone is looking at it: the alert stays unresolved (and keeps counting) but is no longer new."""
    return _move(conn, alert_id, actor, "acknowledged", after=("open",))


def resolve(conn: sqlite3.Connection, alert_id: int, actor: str) -> Alert:
    """Close an alert; the rule firing again afterwards opens a new one."""
    return _move(conn, alert_id, actor, "resolved", after=("open", "acknowledged"))


def _move(
    conn: sqlite3.Connection,
    alert_id: int,
    actor: str,
    status: Literal["acknowledged", "resolved"],
    after: tuple[str, ...],
) -> Alert:
    # An alert moves on from one of the ``after`` statuses, recording who moved it and when (its columns
    # <status>_by and <status>_at: the status names them), audited as alert_<status>.
    with transaction(conn):
        current = alert(conn, alert_id)
        if current.status not in after:
            raise Conflict(f"alert {alert_id} is already {current.status}")
        conn.execute(
            f"UPDATE alerts SET status = ?, {status}_by = ?, {status}_at = ? WHERE id = ?",
            (status, actor, time.time(), alert_id),
        )
        Registry(conn).audit(actor, f"alert_{status}", current.model, None, {"alert": alert_id})
    return alert(conn, alert_id)


def start_action(
    conn: sqlite3.Connection, alert_id: int, action: str, status: str = "running", detail: dict | None = None
) -> int:
    """Record that an alert's action began (or was skipped); returns the action's id."""
    now = time.time()
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO alert_actions (alert_id, action, status, started_at, ended_at, detail_json) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (alert_id, action, status, now, None if status == "running" else now, json.dumps(detail or {})),
        )
    return cur.lastrowid


def finish_action(
    conn: sqlite3.Connection,
    action_id: int,
    status: str,
    detail: dict,
    audit: tuple[str, str, str, int | None] | None = None,
) -> None:
    """Record an action's outcome; ``audit`` = (actor, action, model, version) also appends an audit entry."""
    with transaction(conn):
        conn.execute(
            "UPDATE alert_actions SET status = ?, ended_at = ?, detail_json = ? WHERE id = ?",
            (status, time.time(), json.dumps(detail), action_id),
        )
        if audit is not None:
            actor, what, model, version = audit
            Registry(conn).audit(actor, what, model, version, detail)


def _action(row: sqlite3.Row) -> AlertAction:
    data = dict(row)
    data["detail"] = json.loads(data.pop("detail_json"))
    return AlertAction(**data)

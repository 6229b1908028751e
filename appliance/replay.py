"""The demo's traffic: the spec's ``[data] live`` rows sent through the real prediction API in event-time
order, with their event timestamps, their labels posted as feedback ``label_delay`` event-hours later,
and the monitoring job run at every event-time day boundary.

``speed`` is event-seconds per wall-second (7200, the default: a day in 12 seconds, slow enough for a
retrain and a canary to finish inside the sample's 15 days); 0 sends as fast as the API answers.
"""

from __future__ import annotations

import heapq
import http.client
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import msgspec
import polars as pl

from appliance import progress
from appliance.alerts.actions import finish_actions
from appliance.data.contract import cast_columns
from appliance.data.declared import model_contract
from appliance.data.sources import read_source
from appliance.data.values import iso, json_value
from appliance.errors import ApplianceError, InvalidInput, NotFound, Unavailable
from appliance.home import Home

log = logging.getLogger(__name__)

BATCH_ROWS = 100  # records per predict request at most
FEEDBACK_ROWS = 2_000  # outcomes per feedback request at most
SPEED = 7200.0  # event-seconds per wall-second
MONITOR_WAIT_S = 300  # how long a day boundary waits for a scheduled monitor run under way


class ReplayDay(msgspec.Struct, frozen=True):
    day: str
    predictions: int
    labels: int


class Api:
    """A keep-alive JSON client of the appliance API."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 30.0):
        parts = urlsplit(url)
        try:
            port = parts.port or 80
        except ValueError:
            raise InvalidInput(f"--url {url} has no valid port; write it as http://HOST:PORT") from None
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", port, timeout=timeout)
        self._headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {key}"} if key else {})

    def post(self, path: str, body) -> dict:
        """POST JSON and return the decoded answer; an error answer raises with the API's detail, and
        an API that cannot be reached (or something else answering in its place) is Unavailable."""
        for attempt in range(2):  # the server may have closed an idle keep-alive connection
            try:
                self._conn.request("POST", path, json.dumps(body), self._headers)
                response = self._conn.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self._conn.close()
                if attempt:
                    raise self._unreachable(e) from None
            except OSError as e:  # refused, unreachable, timed out
                self._conn.close()
                raise self._unreachable(e) from None
            except http.client.HTTPException as e:  # something that does not speak HTTP listens there
                self._conn.close()
                raise self._unreachable(e) from None
        try:
            answer = json.loads(payload or b"{}")
        except ValueError as e:
            raise self._unreachable(e) from None  # an HTTP server, but not the appliance's API
        if response.status >= 400:
            raise InvalidInput(f"POST {path} answered {response.status}: {answer.get('detail', answer)}")
        return answer

    def close(self) -> None:
        self._conn.close()

    def _unreachable(self, e: Exception) -> Unavailable:
        why = (e.strerror if isinstance(e, OSError) else None) or type(e).__name__
        return Unavailable(
            f"the API at http://{self._conn.host}:{self._conn.port} did not answer as the appliance's API "
            f"({why}); start one with `appliance up --headless` in another terminal, or pass --url"
        )


def live_frame(home: Home, model: str, days: int | None) -> pl.DataFrame:
    """The spec's live rows (its first ``days`` days), read as the data contract types them (text
    timestamps become times), sorted by event time; rows without an event time are left out."""
    spec = home.spec(model)
    if not spec.data.live:
        raise NotFound(f"model '{model}' has no [data] live file to replay; add live = 'FILE' to its spec")
    when = spec.features.event_time
    frame = cast_columns(model_contract(spec), read_source(spec.resolve(spec.data.live)))
    if when not in frame.columns or frame.schema[when] != pl.Datetime("us", "UTC"):
        raise InvalidInput(
            f"the live file of '{model}' has no event time column '{when}' that reads as a "
            "timestamp; fix the file or [features] event_time"
        )
    read = frame.height
    frame = frame.filter(pl.col(when).is_not_null()).sort(when, maintain_order=True)
    if frame.is_empty():
        raise InvalidInput(
            f"none of the {read:,} rows of the live file of '{model}' has an event time '{when}' that reads as "
            f"a time; if its text is spelled otherwise than ISO 8601, name the spelling with the field's format "
            f'(e.g. format = "%d/%m/%Y %H:%M") in the data contract'
        )
    if days is not None:
        start = frame[spec.features.event_time].min()
        first_day = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo)
        frame = frame.filter(pl.col(spec.features.event_time) < first_day + timedelta(days=days))
    return frame


def replay(
    root: Path,
    model: str,
    url: str,
    *,
    speed: float = SPEED,
    days: int | None = None,
    label_delay_hours: float = 2.0,
    key: str | None = None,
    monitor: Callable[[Path, str, Callable[[str], None]], str | None] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[ReplayDay]:
    """Replay the live rows through the API at ``url``; run ``monitor(root, model, say)`` (default: the
    scheduler's monitor job, recorded and one at a time) at each day boundary. It returns why a run failed
    (None when it did not): a replay whose every run failed raises, one where some did says so in a warning."""
    if speed < 0 or label_delay_hours < 0:
        raise InvalidInput("--speed and --label-delay must not be negative")
    monitor = monitor or _monitoring_job()
    with Home(root) as home:
        spec = home.spec(model)
        frame = live_frame(home, model, days)
    keys = spec.features
    when = keys.event_time
    fields = [*([keys.entity_key] if keys.entity_key else []), *(f.name for f in keys.request)]
    events = frame[when].to_list()
    records = [{k: json_value(v) for k, v in r.items()} for r in frame.select(fields).to_dicts()]
    # Outcomes as the feedback API takes them: a number (0/1 for binary), or a class label as the data holds it.
    outcomes = [json_value(v) for v in frame[spec.target.column].to_list()]
    api = Api(url, key)
    labels: list[tuple[datetime, str, int, object]] = []  # (due, request id, position, outcome) heap
    delay = timedelta(hours=label_delay_hours)
    report: list[ReplayDay] = []
    counts = {"predictions": 0, "labels": 0}
    failures: list[str] = []  # why each monitor run that failed did
    wall0, event0 = time.monotonic(), events[0] if events else None

    def wait_for(event: datetime) -> None:
        if speed > 0:
            pause = wall0 + (event - event0).total_seconds() / speed - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def post_labels(until: datetime | None) -> None:
        due = []
        while labels and (until is None or labels[0][0] <= until):
            due.append(heapq.heappop(labels))
        for i in range(0, len(due), FEEDBACK_ROWS):
            chunk = due[i : i + FEEDBACK_ROWS]
            api.post(
                f"/v1/models/{model}/feedback",
                {"outcomes": [{"request_id": r, "position": p, "outcome": o} for _, r, p, o in chunk]},
            )
            counts["labels"] += len(chunk)

    news = AlertNews(model)

    def tell(line: str) -> None:  # on a line of its own, not after the progress line
        progress.clear()
        say(line)

    def end_of_day(day: datetime) -> None:
        boundary = day + timedelta(days=1)
        post_labels(boundary)
        time.sleep(0.05)  # the server's prediction log writes a few milliseconds behind its answers
        report.append(ReplayDay(day.date().isoformat(), counts["predictions"], counts["labels"]))
        tell(
            f"{day.date()}: {counts['predictions']:,} predictions, {counts['labels']:,} labels so far; "
            "running the monitor"
        )
        failure = monitor(root, model, tell)
        if failure is not None:
            failures.append(failure)
        with Home(root) as home:
            for line in news.since_last(home):
                tell(line)

    try:
        with progress.step(f"replay {model}", len(events), "rows") as sent:
            i, day = 0, None
            while i < len(events):
                event_day = _midnight(events[i])
                if day is not None and event_day > day:
                    end_of_day(day)
                day = event_day
                wait_for(events[i])
                post_labels(events[i])
                j = i + 1
                while (
                    j < len(events)
                    and j - i < BATCH_ROWS
                    and _midnight(events[j]) == day
                    and (speed == 0 or events[j] <= events[i] + timedelta(seconds=speed * 0.05))
                ):
                    j += 1
                batch = [r | {when: iso(e)} for r, e in zip(records[i:j], events[i:j])]
                answer = api.post(f"/v1/models/{model}/predict", batch)
                for position, (e, outcome) in enumerate(zip(events[i:j], outcomes[i:j])):
                    if outcome is not None:  # an unlabelled row has nothing to send back
                        heapq.heappush(labels, (e + delay, answer["request_id"], position, outcome))
                counts["predictions"] += j - i
                sent.update(j, {"day": str(day.date())})
                i = j
            if day is not None:
                end_of_day(day)
            post_labels(None)
    finally:
        api.close()
    finish_actions(say)
    with Home(root) as home:
        for line in news.since_last(home):
            say(line)
        say(standing(home, model))
    _judge_monitor_runs(model, len(report), failures, say)
    return report


def _judge_monitor_runs(model: str, runs: int, failures: list[str], say: Callable[[str], None]) -> None:
    """The traffic was sent either way; but a replay whose monitoring never ran has not shown what it is for:
    every run failed is an error, some failed a warning, each naming the first failure and where to look."""
    if not failures:
        return
    look = f"see `appliance jobs list`, fix it and run `appliance jobs run monitor {model}`"
    if len(failures) == runs:
        raise MonitorFailed(f"every monitor run of the replay failed ({runs} of {runs}): {failures[0]}; {look}")
    say(f"warning: {len(failures)} of {runs} monitor runs of the replay failed, the first: {failures[0]}; {look}")


class MonitorFailed(ApplianceError):
    """The replay's traffic was sent, but the monitor job it ran at every day boundary failed each time."""


def standing(home: Home, model: str) -> str:
    """One line: the production version, and the running deployment if there is one."""
    from appliance.deployment.deployments import current

    line = f"{model}: v{home.registry.alias(model, 'production')} in production"
    d = current(home, model)
    if d is not None:
        line += (
            f"; {d.strategy} deployment {d.id} of v{d.candidate_version} still at {d.traffic_percent:g} % "
            f"(see `appliance deploy {model} status`)"
        )
    return line


class AlertNews:
    """What the loop did since the last look, as lines for the demo's output: alerts opened, alert
    actions finished, and the steps of deployments (a canary advanced, promoted or rolled back)."""

    DEPLOYMENT_STEPS: ClassVar[dict[str, str]] = {
        "canary_advanced": "advanced",
        "deployment_completed": "completed",
        "deployment_rolled_back": "ROLLED BACK",
        "deployment_aborted": "aborted",
    }

    def __init__(self, model: str):
        self.model = model
        self.seen: set[tuple[str, int]] = set()
        self.audited = 0  # the newest audit entry already looked at

    def since_last(self, home: Home) -> list[str]:
        from appliance.alerts.records import list_alerts

        lines = []
        for a in reversed(list_alerts(home.conn, self.model, include_resolved=True)):
            if ("alert", a.id) not in self.seen:
                self.seen.add(("alert", a.id))
                lines.append(f"  ALERT {a.id} {a.severity}: {a.rule} ({a.target}) {a.message} → {a.action}")
            for act in a.actions:
                if act.status != "running" and ("action", act.id) not in self.seen:
                    self.seen.add(("action", act.id))
                    outcome = act.detail.get("outcome") or act.detail.get("error") or act.detail.get("reason") or ""
                    lines.append(f"  alert {a.id}: {act.action} {act.status} {outcome}".rstrip())
        entries = [e for e in home.registry.audit_log(self.model, limit=200) if e.id > self.audited]
        for e in reversed(entries):
            if e.action in self.DEPLOYMENT_STEPS:
                what = self.DEPLOYMENT_STEPS[e.action]
                if e.action == "canary_advanced":
                    what += f" to {e.detail['traffic_percent']:g} %"
                lines.append(
                    f"  deployment {e.detail['deployment']}: v{e.version} {what} by {e.actor} — "
                    f"{e.detail.get('reason', '')}"
                )
        self.audited = max([self.audited, *(e.id for e in entries)])
        return lines


def start_demo(root: Path, model: str, url: str, say: Callable[[str], None], speed: float = SPEED) -> threading.Thread:
    """Replay the live data in a background thread once the server at ``url`` answers /readyz."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        pace = f"a day every {86400 / speed:g} s" if speed else "as fast as it answers"
        say(f"demo: replaying the live data of '{model}' through {url}, {pace}")
        try:
            days = replay(root, model, url, speed=speed, say=say)
            say(f"demo: done — {days[-1].predictions if days else 0:,} predictions; see `appliance alerts list`")
        except ApplianceError as e:  # said like any other error: no traceback for what the message explains
            say(f"demo: error: {e}")
        except Exception:  # the demo's failure must not take the server down
            log.exception("the demo replay failed")

    thread = threading.Thread(target=run, name="demo-replay", daemon=True)
    thread.start()
    return thread


def _monitoring_job() -> Callable[[Path, str, Callable[[str], None]], str | None]:
    """The scheduler's monitor job, which judges the alert rules on each run's rows: each run recorded,
    and never beside another run of it (a scheduled one under way is waited for); it returns the first line
    of a failed run's error."""
    from appliance.errors import Conflict
    from appliance.scheduler.jobs import run_job

    def run(root: Path, model: str, say: Callable[[str], None]) -> str | None:
        deadline = time.monotonic() + MONITOR_WAIT_S
        while True:
            try:
                job = run_job(root, "monitor", model, trigger="replay")
                break
            except Conflict:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if job.status != "failed":
            return None
        why = (job.error or "no error recorded").splitlines()[0]
        say(f"  the monitor failed: {why}")
        return why

    return run


def _midnight(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day, tzinfo=t.tzinfo)

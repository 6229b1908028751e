"""The jobs the appliance runs on a schedule, run one at a time per job and model, each run recorded
in monitoring.db. ``run_job`` is what the scheduler, `appliance jobs run`, the dashboard's "run now" and
the demo's replay all call, so a monitor run judges the alert rules whoever starts it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import msgspec

from appliance.errors import ApplianceError, InvalidInput
from appliance.home import Home
from appliance.monitoring.store import JobRun, begin_job_run, end_job_run, job_runs, open_monitoring
from appliance.spec import ModelSpec
from appliance.spec.schedules import next_run

log = logging.getLogger(__name__)


def _monitor(home: Home, model: str) -> dict:
    """The monitoring run, then the model's alert rules judged on the rows it wrote. Called here, one after
    the other, because alerting depends on monitoring and not the other way round."""
    from appliance.alerts.engine import on_monitor_results
    from appliance.monitoring.monitor import monitor_run

    run = monitor_run(home, model)
    fired = on_monitor_results(home, model, run.results)
    # the alerts opened or updated (their actions, such as a retrain, run in the background: see alerts.actions)
    summary = msgspec.to_builtins(run.report) | {"alerts_fired": sorted({a.id for a in fired})}
    if run.report.failed:  # what was measured is written and judged; the run fails, so that it is seen
        raise MonitoringIncomplete(
            f"{len(run.report.failed)} group(s) of windows could not be checked and are tried again next run "
            f"(the other results are written): {'; '.join(run.report.failed)}",
            summary,
        )
    return summary


class MonitoringIncomplete(RuntimeError):
    """A monitor run wrote what it could measure, but some windows' checks failed (a bug, or data a check's
    library cannot take): the job is recorded failed, with each group's error (the log has the tracebacks) and
    the summary of what it did measure."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def _train(home: Home, model: str) -> dict:
    """A scheduled retrain. One with nothing new to learn from succeeds as a job (nothing is wrong) and says it
    skipped and why; its pipeline run is recorded as skipped."""
    from appliance.training.pipeline import NothingNew
    from appliance.training.worker import train_in_worker

    outcome = train_in_worker(home.root, model, actor="scheduler", retrain=True)
    if isinstance(outcome, NothingNew):
        return {
            "run_id": outcome.run_id,
            "status": "skipped",
            "reason": outcome.message,
            "learnt_before": outcome.learnt_before,
            "seconds": outcome.seconds,
        }
    return {
        "run_id": outcome.run_id,
        "version": outcome.version.version,
        "status": outcome.version.status,
        "seconds": outcome.seconds,
    }


# job name -> (what it does, where its schedule lives in the spec)
JOBS: dict[str, tuple[Callable[[Home, str], dict], Callable[[ModelSpec], str | None]]] = {
    "monitor": (_monitor, lambda spec: spec.monitoring.schedule),
    "train": (_train, lambda spec: spec.training.schedule),
}


class JobInfo(msgspec.Struct, frozen=True):
    job: str
    model: str
    schedule: str | None  # None: runs only when asked
    last: JobRun | None
    next_run: datetime | None  # None when unscheduled


def run_job(root: Path, job: str, model: str, trigger: str = "manual") -> JobRun:
    """Run one job for one model now, in this process, and return its recorded run.

    Conflict if that job is already running for the model (here or in another process). The
    job's own failure is recorded in the run (status 'failed', error) and returned, not raised.
    """
    if job not in JOBS:
        raise InvalidInput(f"unknown job '{job}'; the jobs are {', '.join(JOBS)}")
    with Home(root) as home:
        home.registry.model(model)
        conn = open_monitoring(home.root)
        try:
            run_id = begin_job_run(conn, job, model, trigger)
            try:
                summary = JOBS[job][0](home, model)
            except ApplianceError as e:
                end_job_run(conn, run_id, "failed", str(e))
            except Exception as e:  # a bug: keep the traceback in the record and the log
                log.exception("job %s for %s failed", job, model)
                done = e.summary if isinstance(e, MonitoringIncomplete) else None  # what a part-run measured
                end_job_run(conn, run_id, "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc()}", done)
            else:
                end_job_run(conn, run_id, "succeeded", summary=summary)
        finally:
            conn.close()
        return next(r for r in job_runs(home, job, model, limit=5) if r.id == run_id)


def list_jobs(home: Home) -> list[JobInfo]:
    """Every job of every model, its schedule, last run and next run."""
    found = []
    for summary in home.registry.models():
        spec = home.spec(summary.name)
        for job, (_, schedule_of) in JOBS.items():
            schedule = schedule_of(spec)
            runs = job_runs(home, job, summary.name, limit=1)
            last = runs[0] if runs else None
            upcoming = next_run(schedule, last.started_at if last else None) if schedule else None
            found.append(JobInfo(job, summary.name, schedule, last, upcoming))
    return found

"""APScheduler in the server's process: every model's scheduled jobs, kept in step with the specs.

One instance of a job at a time (max_instances=1 here, and run_job's Conflict across processes);
runs missed while the process was busy or down coalesce into one, if within the grace time.
"""

from __future__ import annotations

import logging
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.scheduler.jobs import JOBS, run_job
from appliance.spec.schedules import trigger

log = logging.getLogger(__name__)

SYNC_SECONDS = 60  # how soon a new model or an edited schedule is picked up
MISFIRE_GRACE_SECONDS = 3600


def start_scheduler(root: Path) -> BackgroundScheduler:
    """Start the scheduler with every model's jobs; stop it with ``.shutdown()``."""
    scheduler = BackgroundScheduler(
        timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": MISFIRE_GRACE_SECONDS}
    )
    sync_jobs(scheduler, root)
    scheduler.add_job(sync_jobs, "interval", seconds=SYNC_SECONDS, args=(scheduler, root), id="sync")
    scheduler.start()
    return scheduler


def sync_jobs(scheduler: BackgroundScheduler, root: Path) -> None:
    """Add, replace or remove scheduled jobs to match the specs now."""
    wanted: dict[str, str] = {}
    with Home(root) as home:
        for summary in home.registry.models():
            try:
                spec = home.spec(summary.name)
            except ApplianceError as e:  # a broken spec stops its own jobs, not everyone's
                log.error("not scheduling '%s': %s", summary.name, e)
                continue
            for job, (_, schedule_of) in JOBS.items():
                if schedule_of(spec):
                    wanted[f"{job}:{summary.name}"] = schedule_of(spec)
    for existing in scheduler.get_jobs():
        if existing.id != "sync" and existing.id not in wanted:
            existing.remove()
    for job_id, schedule in wanted.items():
        name = f"{job_id} {schedule}"  # the name carries the schedule, so an edited one is seen
        current = scheduler.get_job(job_id)
        if current is not None and current.name == name:
            continue
        job, model = job_id.split(":", 1)
        scheduler.add_job(
            _scheduled, trigger(schedule), args=(root, job, model), id=job_id, name=name, replace_existing=True
        )


def _scheduled(root: Path, job: str, model: str) -> None:
    try:
        run = run_job(root, job, model, trigger="schedule")
    except ApplianceError as e:  # e.g. already running from the CLI: skip this turn
        log.warning("scheduled %s for %s not run: %s", job, model, e)
        return
    if run.status == "failed":
        log.error("scheduled %s for %s failed: %s", job, model, (run.error or "").splitlines()[0])

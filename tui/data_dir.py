"""What the dashboard reads and does, over one opened data directory.

Every call runs on a worker thread, so one lock serialises use of the shared SQLite connections.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec
import polars as pl

from appliance.alerts import records as alert_records
from appliance.alerts.records import Alert
from appliance.deployment import deployments
from appliance.deployment.deployments import Deployment
from appliance.home import Home
from appliance.machine.cost import CostRate, CostSection, RangeCost, cost_between, cost_per_hour, load_cost
from appliance.machine.gpus import GpuProbe
from appliance.machine.sampler import MachineSampler
from appliance.machine.snapshot import MachineProbe, MachineSnapshot
from appliance.monitoring.store import results
from appliance.monitoring.story import Distribution, MonitoringStory, distributions, monitoring_story
from appliance.registry.registry import AuditEntry, ModelVersion
from appliance.scheduler import jobs as scheduled
from appliance.scheduler.jobs import JobInfo
from appliance.serving.traffic import Traffic, recent_traffic
from appliance.settings import load_settings
from appliance.tracking.queries import RunDetail, RunSummary, list_runs, metric_series, run_detail
from appliance.validation.comparison import Comparison, compare_with_production

ACTOR = "tui"
TRAFFIC_SECONDS = 60.0


class ModelHealth(msgspec.Struct, frozen=True):
    """One model's row on the overview."""

    model: str
    production: int | None
    candidate: int | None
    deployment: Deployment | None  # the running one
    traffic: Traffic
    open_alerts: int
    monitoring: JobInfo | None  # the model's monitor job: last and next run


class Event(msgspec.Struct, frozen=True):
    """One thing that happened to a model, as the overview lists them."""

    at: float  # unix seconds
    model: str
    kind: str  # deployment | alert | run
    text: str


class ModelMonitoring(msgspec.Struct, frozen=True):
    """What the Monitoring tab shows of one model."""

    story: MonitoringStory
    serving: bool  # production serves story.served_version (else no version serves: it is the newest with results)
    distributions: list[Distribution]  # the served version's newest window with distributions recorded
    segments: pl.DataFrame  # the served version's performance per segment ('COLUMN=VALUE'), newest labelled window


class MachineCosts(msgspec.Struct, frozen=True):
    snapshot: MachineSnapshot
    history: list[MachineSnapshot]
    cost: CostSection
    rate: CostRate
    last_run: RunSummary | None  # the latest finished training run
    run_cost: RangeCost | None
    served: int  # predictions over the sampled span
    sampled: RangeCost | None  # cost over the sampled span (for the per-1,000 figure)


def find_cost(root: Path, path: Path | None) -> CostSection:
    """The [cost] section of ``path`` (which must exist), else of the data directory's appliance.toml, else none."""
    if path is not None:
        return load_cost(path)
    return load_settings(root).cost if Path(root).is_dir() else CostSection()


class DataDirectory:
    """One data directory as the dashboard sees it."""

    def __init__(self, root: Path, cost: CostSection | None = None, gpus: GpuProbe | None = None):
        self.home = Home(root)
        self.root = self.home.root
        self.cost = cost or CostSection()
        self.lock = threading.RLock()
        self.sampler = MachineSampler(MachineProbe(self.root, gpus), keep=300, disk_every=300.0)
        self.closed = False

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.sampler.stop()
            self.home.close()

    # -- reads ----------------------------------------------------------------------------------

    def overview(self) -> list[ModelHealth]:
        """Every model with its aliases, running deployment, live traffic, alerts and monitoring runs."""
        alerts, jobs = self.alerts(include_resolved=False), self.jobs()
        with self.lock:
            rows = []
            for m in self.home.registry.models():
                monitor = next((j for j in jobs if j.job == "monitor" and j.model == m.name), None)
                rows.append(
                    ModelHealth(
                        m.name,
                        m.production,
                        m.candidate,
                        deployments.current(self.home, m.name),
                        recent_traffic(self.root, m.name, TRAFFIC_SECONDS),
                        sum(1 for a in alerts if a.model == m.name),
                        monitor,
                    )
                )
            return rows

    def models(self) -> list[str]:
        with self.lock:
            return [m.name for m in self.home.registry.models()]

    def versions(self) -> list[tuple[ModelVersion, int | None, int | None]]:
        """Every version of every model, newest first, with the model's production and candidate."""
        with self.lock:
            rows = []
            for m in self.home.registry.models():
                rows += [(v, m.production, m.candidate) for v in reversed(self.home.registry.versions(m.name))]
            return rows

    def comparison(self, model: str, version: int, production: int) -> Comparison:
        """``version`` against ``production`` scored on the same rows (``appliance.validation.comparison``):
        the newest live labelled window both can be scored on, else the newer evaluation rows."""
        with self.lock:
            return compare_with_production(self.home, model, version, production)

    def deployment(self, model: str) -> Deployment | None:
        """The model's latest deployment, running or ended."""
        with self.lock:
            return deployments.latest(self.home, model)

    def rollback_target(self, model: str) -> int | None:
        """The version a rollback would put back in production: the registry's production history replayed,
        each promotion standing until a rollback takes it back (as the registry's promotions table keeps them)."""
        with self.lock:
            standing: list[int] = []
            for change in self.home.registry.production_history(model):
                if change.action == "rollback":
                    standing = standing[:-1]
                elif change.version is not None:
                    standing.append(change.version)
            return standing[-2] if len(standing) > 1 else None

    def traffic_history(self) -> dict[str, pl.DataFrame]:
        """Each served model's traffic per data window (requests, latency percentiles), as the monitor job
        recorded it for the version production serves: the monitoring story's, so both tabs tell it alike."""
        with self.lock:
            return {
                m.name: monitoring_story(self.home, m.name).traffic
                for m in self.home.registry.models()
                if m.production is not None
            }

    def events(self, limit: int = 30) -> list[Event]:
        """The newest deployments (and the promotions and rollbacks they and people made), alerts and
        training runs of every model, newest first."""
        with self.lock:
            found: list[Event] = []
            for m in self.home.registry.models():
                found += [_production_event(m.name, e) for e in self.home.registry.production_history(m.name)]
                for d in deployments.history(self.home, m.name):
                    what = f"{d.strategy} of v{d.candidate_version} against v{d.baseline_version}"
                    found.append(Event(d.started_at, m.name, "deployment", f"{what} started"))
                    if d.ended_at is not None:
                        ended = d.status.replace("_", " ") + (f": {d.reason}" if d.reason else "")
                        found.append(Event(d.ended_at, m.name, "deployment", f"{what} {ended}"))
            alerts = alert_records.list_alerts(self.home.conn, include_resolved=True)
            found += [Event(a.first_seen, a.model, "alert", f"{a.severity} {a.rule}: {a.message}") for a in alerts]
            runs = list_runs(self.home.tracking, None, limit)
            found += [Event(r.ended_at or r.started_at, r.model, "run", f"{r.name} {r.outcome}") for r in runs]
        return sorted(found, key=lambda e: e.at, reverse=True)[:limit]

    def monitoring(self, model: str) -> ModelMonitoring:
        """One model's monitoring story (``appliance.monitoring.story``) with the served version's recorded
        distributions and segments."""
        with self.lock:
            story = monitoring_story(self.home, model)
            version = story.served_version
            if version is None:
                return ModelMonitoring(story, False, [], pl.DataFrame())
            segments = results(self.home, model, check="performance").filter(
                pl.col("version") == version, pl.col("feature").str.contains("=")
            )
            return ModelMonitoring(
                story,
                self.home.registry.alias(model, "production") == version,
                distributions(self.home, model, version),
                segments.filter(pl.col("window_start") == pl.col("window_start").max()),
            )

    def alerts(self, include_resolved: bool) -> list[Alert]:
        with self.lock:
            return alert_records.list_alerts(self.home.conn, include_resolved=include_resolved)

    def jobs(self) -> list[JobInfo]:
        with self.lock:
            return scheduled.list_jobs(self.home)

    def runs(self, limit: int = 100) -> list[RunSummary]:
        with self.lock:
            return list_runs(self.home.tracking, None, limit)

    def run(self, run_id: str) -> RunDetail:
        with self.lock:
            return run_detail(self.home.tracking, run_id)

    def curves(self, detail: RunDetail) -> dict[str, list[float]]:
        """The run's (and its child runs') metric series with more than one point: its training curves."""
        with self.lock:
            curves = {
                name: [v for _, v in metric_series(self.home.tracking, detail.run.id, name)]
                for name, n in detail.metric_points.items()
                if n > 1
            }
            for child in detail.child_runs[:4]:
                for name, n in run_detail(self.home.tracking, child.id).metric_points.items():
                    if n > 1:
                        curves[f"{child.name} {name}"] = [
                            v for _, v in metric_series(self.home.tracking, child.id, name)
                        ]
            return curves

    def machine(self) -> MachineCosts:
        """A fresh machine snapshot, the cost per hour, per latest training run and over the sampled span."""
        snapshot = self.sampler.sample()
        history = self.sampler.snapshots()
        runs = [r for r in self.runs(20) if r.ended_at is not None and r.status == "succeeded"]
        last = runs[0] if runs else None
        run_cost = cost_between(history, last.started_at, last.ended_at, self.cost) if last else None
        sampled, served = None, 0
        if len(history) > 1:
            start, end = history[0].taken_at, history[-1].taken_at
            sampled = cost_between(history, start, end, self.cost)
            served = sum(recent_traffic(self.root, m, time.time() - start).requests for m in self.models())
        return MachineCosts(
            snapshot, history, self.cost, cost_per_hour(snapshot, self.cost), last, run_cost, served, sampled
        )

    # -- actions: the same functions the CLI calls ------------------------------------------------

    def promote(self, model: str, version: int, reason: str = "") -> ModelVersion:
        with self.lock:
            return self.home.registry.promote(model, version, actor=ACTOR, reason=reason)

    def rollback(self, model: str, reason: str = "") -> ModelVersion:
        with self.lock:
            return self.home.registry.rollback(model, actor=ACTOR, reason=reason)

    def start_deployment(self, model: str, strategy: str, version: int) -> Deployment:
        with self.lock:
            return deployments.start(self.home, model, strategy, version, actor=ACTOR)

    def advance_deployment(self, model: str) -> Deployment:
        with self.lock:
            return deployments.advance(self.home, model, actor=ACTOR)

    def abort_deployment(self, model: str) -> Deployment:
        with self.lock:
            return deployments.abort(self.home, model, actor=ACTOR, reason="aborted from the dashboard")

    def acknowledge(self, alert_id: int) -> Alert:
        with self.lock:
            return alert_records.acknowledge(self.home.conn, alert_id, ACTOR)

    def resolve(self, alert_id: int) -> Alert:
        with self.lock:
            return alert_records.resolve(self.home.conn, alert_id, ACTOR)

    def run_job(self, job: str, model: str):
        """Run a scheduled job now, as `appliance jobs run` does (it opens the data directory itself): a monitor
        run judges the alert rules, whose actions run on this process's threads."""
        return scheduled.run_job(self.root, job, model)


def _production_event(model: str, change: AuditEntry) -> Event:
    was = change.detail.get("from")
    if change.action == "rollback":
        return Event(change.at, model, "deployment", f"rolled back to v{change.version} (from v{was})")
    forced = " despite its gates" if change.action == "promote_override" else ""
    before = f"v{was}" if was else "none"
    return Event(change.at, model, "deployment", f"v{change.version} in production{forced} (was {before})")

"""Fixed data for the dashboard's snapshot tests: a data directory whose reads return the same domain objects on
every run, so that a snapshot changes only when a tab draws differently.

Two models unlike the bundled sample's: ``churn`` (binary, v2 in a canary at 25 % against production v1) and
``demand`` (regression, keyed by an integer store id). Every time is a fixed instant (``NOW`` stands for the
moment the screen is drawn), every id is written out, the GPUs are the fake NVML's H100 and T4. The writes
raise: a snapshot never acts.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from fake_nvml import H100, T4, FakeNvml

from appliance.alerts.records import Alert, AlertAction
from appliance.deployment.deployments import Deployment
from appliance.machine.cost import CostSection, cost_between, cost_per_hour
from appliance.machine.disk import DiskPart, DiskUse
from appliance.machine.gpus import GpuProbe
from appliance.machine.host import CpuUse, MemoryUse, ProcessUse
from appliance.machine.snapshot import MachineSnapshot
from appliance.monitoring.store import JobRun
from appliance.monitoring.story import WINDOW_START, Distribution, MonitoringStory
from appliance.registry.registry import ModelVersion
from appliance.scheduler.jobs import JobInfo
from appliance.serving.traffic import Traffic
from appliance.tracking.queries import RunDetail, RunSummary
from appliance.validation.comparison import Comparison
from appliance.validation.paired import Difference
from tui.data_dir import DataDirectory, Event, MachineCosts, ModelHealth, ModelMonitoring

ROOT = Path("/srv/appliance")  # never read: the header shows SUB_TITLE
SUB_TITLE = "API http://127.0.0.1:8000 · /srv/appliance"
DAY = timedelta(days=1)
FIRST_WINDOW = datetime(2026, 11, 1, tzinfo=UTC)
WINDOWS = [FIRST_WINDOW + i * DAY for i in range(10)]  # daily data windows, 11-01 … 11-10
NOW = datetime(2026, 11, 11, 9, 30, tzinfo=UTC).timestamp()  # when the screen is drawn
HOUR = 3600.0


def _at(days_before: float) -> float:
    return NOW - days_before * 86400


# run ids, as uuid4().hex writes them
CHURN_V1, CHURN_V2 = "9f2c41d07ab34e1c8d55b0a6e2f71c93", "4e81c0aa93d24f7bb61e05c9d8a3f240"
DEMAND_V1 = "c07d5e1b2a444b0f9e31d86a7c25e0b8"
RUNNING, REJECTED = "7b3a9e22f0c14d68a9b3e5f1027c8d4e", "51d0be8c7a934c2e8f60d1b9a5e7c3f2"


def _version(model: str, v: int, run_id: str, metrics: dict, gates: list[tuple[str, bool, str]], days: float):
    return ModelVersion(
        model=model,
        version=v,
        status="registered",
        artifact_sha256=f"{v:02d}" * 32,
        feature_schema={},
        metrics=metrics,
        params={},
        gate_report={"checks": [{"name": n, "passed": ok, "detail": detail} for n, ok, detail in gates]},
        data_version=f"{v}e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"[:64],
        code_version="a3c2181d6e0f",
        run_id=run_id,
        created_at=_at(days),
    )


BINARY_GATES = [("min_auc", True, "auc 0.8741 ≥ 0.75"), ("max_log_loss", True, "log_loss 0.3120 ≤ 0.5")]
VERSIONS = [  # newest first, as DataDirectory.versions gives them, with each model's production and candidate
    (
        _version(
            "churn", 2, CHURN_V2, {"auc": 0.8741, "precision": 0.71, "recall": 0.64, "log_loss": 0.312}, BINARY_GATES, 3
        ),
        1,
        2,
    ),
    (
        _version(
            "churn",
            1,
            CHURN_V1,
            {"auc": 0.8612, "precision": 0.69, "recall": 0.61, "log_loss": 0.334},
            BINARY_GATES,
            12,
        ),
        1,
        2,
    ),
    (
        _version(
            "demand",
            1,
            DEMAND_V1,
            {"rmse": 14.82, "mae": 9.31, "r2": 0.873},
            [("max_rmse", True, "rmse 14.82 ≤ 20")],
            11,
        ),
        1,
        None,
    ),
]
COMPARISON = Comparison(
    model="churn",
    candidate=2,
    production=1,
    difference=Difference("auc", 0.8741, 0.8612, 0.0031, 0.0227, "DeLong"),
    rows=1_240,
    rows_from="live",
    rows_label="live labelled window 2026-11-08, 1,240 rows",
)
CANARY = Deployment(
    id=7,
    model="churn",
    strategy="canary",
    candidate_version=2,
    baseline_version=1,
    status="running",
    step=1,
    traffic_percent=25.0,
    split_key="customer_id",
    step_started_at=_at(0.2),
    started_at=_at(1),
    ended_at=None,
    reason="",
)


def _alert(id: int, model: str, rule: str, severity: str, status: str, message: str, days: float, **more) -> Alert:
    return Alert(
        id=id,
        rule=rule,
        model=model,
        target=more.pop("target", "monthly_spend"),
        severity=severity,
        action=more.pop("action", "notify"),
        status=status,
        message=message,
        value=more.pop("value", 0.31),
        threshold=more.pop("threshold", 0.1),
        window_start="2026-11-08T00:00:00+00:00",
        window_end="2026-11-09T00:00:00+00:00",
        count=more.pop("count", 1),
        first_seen=_at(days),
        last_seen=_at(days - 0.5),
        acknowledged_by=more.pop("acknowledged_by", None),
        acknowledged_at=None,
        resolved_by="cli" if status == "resolved" else None,
        resolved_at=_at(days - 1) if status == "resolved" else None,
        **more,
    )


ALERTS = [
    _alert(12, "churn", "spend_drift", "critical", "open", "monthly_spend KS 0.31 > 0.1 on 2026-11-08", 2, count=3),
    _alert(
        11,
        "churn",
        "auc_drop",
        "warning",
        "acknowledged",
        "estimated AUC 0.79 < 0.8",
        2.5,
        target="*",
        value=0.79,
        threshold=0.8,
        acknowledged_by="tui",
        action="retrain",
        actions=[AlertAction(4, 11, "retrain", "running", _at(2.4), None, {"run": RUNNING})],
    ),
    _alert(
        9,
        "demand",
        "p99_latency",
        "warning",
        "resolved",
        "p99 latency 48 ms > 40 ms",
        6,
        target="*",
        value=48.0,
        threshold=40.0,
    ),
]


def _run(id: str, model: str, kind: str, name: str, status: str, days: float, took: float | None, **more):
    ended = _at(days) + took if took is not None else None
    return RunSummary(id, model, name, kind, None, status, _at(days), ended, "a3c2181d6e0f", None, 0, **more)


RUNS = [  # newest first
    _run(
        RUNNING,
        "churn",
        "train",
        "retrain after auc_drop",
        "running",
        0.1,
        None,
        progress="iteration 340/1000 · train auc 0.8113",
    ),
    _run(CHURN_V2, "churn", "train", "train", "succeeded", 3, 412.6, verdict="registered"),
    _run(REJECTED, "demand", "train", "retrain after p99_latency", "succeeded", 5, 95.2, verdict="rejected"),
    _run(DEMAND_V1, "demand", "train", "train", "succeeded", 11, 88.4, verdict="registered"),
    _run(CHURN_V1, "churn", "train", "train", "succeeded", 12, 398.1, verdict="registered"),
]
CURVE = [0.69 - 0.38 * (1 - 0.93**i) for i in range(60)]  # a training loss falling towards 0.31


def _job(job: str, model: str, schedule: str | None, next_run: datetime | None, status: str, days: float) -> JobInfo:
    last = JobRun(3, job, model, _at(days), _at(days) + 42.0, status, None, {}, 4242, "schedule")
    return JobInfo(job, model, schedule, last, next_run)


JOBS = [
    _job("monitor", "churn", "0 * * * *", datetime(2026, 11, 11, 10, tzinfo=UTC), "succeeded", 0.02),
    _job("train", "churn", "0 2 * * 1", datetime(2026, 11, 16, 2, tzinfo=UTC), "succeeded", 3),
    _job("monitor", "demand", "0 * * * *", datetime(2026, 11, 11, 10, tzinfo=UTC), "failed", 0.02),
    _job("train", "demand", None, None, "succeeded", 11),
]


def _story(
    model: str, metric: str, drift: list[tuple[str, str, float, float, float]], realized: float, volume: int, p99: float
) -> MonitoringStory:
    """Ten daily windows of the served v1: each (feature, statistic, threshold, usual value, value on the last
    three days) drifts on the last three; performance realized from labels until two days ago, estimated to
    today with its band, worse on the last three; ``volume`` requests on the first day, rising, and a p99
    latency that jumps on the last two days."""
    lower_is_better = metric == "rmse"
    worse = 1.06 if lower_is_better else 0.94
    drifts, quality, performance, traffic = [], [], [], []
    for i, w in enumerate(WINDOWS):
        late, rows = i >= len(WINDOWS) - 3, volume + volume // 25 * i
        for feature, method, threshold, usual, drifted in drift:
            value = drifted if late else usual + 0.002 * (i % 3)
            drifts.append(_scored(w, feature, method, value, threshold, rows))
        quality.append(_scored(w, drift[0][0], "missing_rate", 0.3 if late else 0.0, 0.1, rows))
        estimated = realized * (worse if late else 1 + 0.004 * (i % 3))
        labelled = i < len(WINDOWS) - 2
        performance.append(
            {
                "window_start": w,
                "realized": estimated * 0.997 if labelled else None,
                "estimated": estimated,
                "lower": estimated * 0.96,
                "upper": estimated * 1.04,
                "threshold": realized * (1.1 if lower_is_better else 0.93),
                "rows": rows,
                "labelled": rows if labelled else 0,
                "alert": late,
            }
        )
        traffic.append(
            {
                "window_start": w,
                "requests": float(rows),
                "error_rate": 0.002,
                "latency_p50_ms": p99 / 3 + 0.1 * (i % 4),
                "latency_p95_ms": p99 * 0.7,
                "latency_p99_ms": p99 * (1.5 if i >= len(WINDOWS) - 2 else 1),
                "throughput_rps": rows / 86400,
            }
        )
    operations = pl.DataFrame(
        schema={"at": WINDOW_START, "check": pl.String, "feature": pl.String, "method": pl.String, "value": pl.Float64}
    )
    return MonitoringStory(
        model,
        1,
        [1],
        WINDOWS,
        [(1, WINDOWS[0], WINDOWS[-1])],
        _frame(drifts),
        _frame(quality),
        metric,
        lower_is_better,
        _frame(performance),
        _frame(traffic),
        operations,
    )


def _scored(window: datetime, feature: str, method: str, value: float, threshold: float, rows: int) -> dict:
    """A statistic of a window as the story scores it: its value against its own threshold."""
    return {
        "window_start": window,
        "feature": feature,
        "method": method,
        "value": value,
        "threshold": threshold,
        "alert": value > threshold,
        "rows": rows,
        "score": value / threshold,
    }


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows).with_columns(pl.col("window_start").cast(WINDOW_START))


# (feature, statistic, threshold, usual value, value on the last three days)
CHURN_DRIFT = [
    ("monthly_spend", "ks", 0.1, 0.045, 0.31),
    ("monthly_spend", "psi", 0.2, 0.03, 0.52),
    ("plan", "chi2", 12.0, 1.8, 9.4),
    ("tenure_months", "psi", 0.2, 0.13, 0.14),
    ("prediction", "psi", 0.1, 0.035, 0.16),
]
DEMAND_DRIFT = [
    ("temperature_c", "ks", 0.08, 0.02, 0.05),
    ("promo", "chi2", 9.0, 1.2, 14.5),
    ("prediction", "psi", 0.1, 0.01, 0.03),
]
STORIES = {
    "churn": _story("churn", "auc", CHURN_DRIFT, realized=0.86, volume=1_200, p99=11.0),
    "demand": _story("demand", "rmse", DEMAND_DRIFT, realized=14.8, volume=420, p99=17.0),
}


def _distribution(feature: str, kind: str, shares: dict[str, tuple[float, float]], rows: int) -> Distribution:
    """The newest window's distribution of a feature: each label's (reference, current) share; ``rows`` in the
    window, against the reference's fixed 52,310."""
    reference, current = zip(*shares.values())
    return Distribution(feature, kind, list(shares), list(reference), list(current), 52_310, rows, WINDOWS[-1])


SPEND = {"[0, 20)": (0.22, 0.1), "[20, 45)": (0.41, 0.28), "[45, 90)": (0.3, 0.39), "≥ 90": (0.07, 0.23)}
PLAN = {"basic": (0.55, 0.43), "family": (0.25, 0.27), "pro": (0.18, 0.28), "(missing)": (0.02, 0.02)}
DISTRIBUTIONS = {
    "churn": [
        _distribution("monthly_spend", "numeric", SPEND, 1_360),
        _distribution("plan", "categorical", PLAN, 1_360),
    ],
    "demand": [
        _distribution("promo", "categorical", {"none": (0.7, 0.35), "flyer": (0.2, 0.25), "tv": (0.1, 0.4)}, 730)
    ],
}
SEGMENTS = {
    "churn": [("plan=basic", "auc", 0.842, 0.8, 610, False), ("plan=pro", "auc", 0.781, 0.8, 212, True)],
    "demand": [("store_id=4", "rmse", 12.9, 16.3, 240, False), ("store_id=17", "rmse", 19.4, 16.3, 188, True)],
}


def _segments(model: str) -> pl.DataFrame:
    return pl.DataFrame(
        SEGMENTS[model], schema=["feature", "method", "value", "threshold", "rows", "alert"], orient="row"
    ).with_columns(window_start=pl.lit(WINDOWS[-3]).cast(WINDOW_START))


EVENTS = sorted(
    [
        Event(CANARY.started_at, "churn", "deployment", "canary of v2 against v1 started"),
        *(Event(a.first_seen, a.model, "alert", f"{a.severity} {a.rule}: {a.message}") for a in ALERTS),
        *(Event(r.ended_at or r.started_at, r.model, "run", f"{r.name} {r.outcome}") for r in RUNS),
        Event(_at(11.9), "churn", "deployment", "v1 in production (was none)"),
        Event(_at(10.9), "demand", "deployment", "v1 in production (was none)"),
    ],
    key=lambda e: e.at,
    reverse=True,
)
COST = CostSection(electricity_per_kwh=0.31, hardware_price=42_000.0, host_idle_watts=90.0, host_busy_watts=240.0)
DISK = DiskUse(
    str(ROOT),
    7_340_032_000,
    [
        DiskPart("archive/", 4_100_000_000),
        DiskPart("artifacts/", 2_200_000_000),
        DiskPart("monitoring.db", 640_032_000),
        DiskPart("metadata.db", 400_000_000),
    ],
    212_000_000_000,
    480_000_000_000,
)


def _machine() -> MachineCosts:
    """Six snapshots a minute apart of a host with the fake NVML's H100 and T4, busier towards the last."""
    nvml = FakeNvml([H100, T4])
    probe = GpuProbe(nvml)
    history = []
    for i in range(6):
        nvml.devices[0]["utilization"] = 40 + 9 * i
        at = NOW - (5 - i) * 60
        cpu = CpuUse(20.0 + 6 * i, [20.0 + 6 * i] * 16, (2.1, 1.8, 1.5))
        history.append(
            MachineSnapshot(
                at,
                cpu,
                MemoryUse(41_000_000_000, 128_000_000_000),
                ProcessUse(4242, 1_900_000_000, 112.0),
                probe.read(at),
                DISK if i == 5 else None,
            )
        )
    snapshot = history[-1]
    last = RUNS[1]
    start, end = history[0].taken_at, history[-1].taken_at
    run_cost = cost_between(history, last.started_at, last.ended_at or last.started_at, COST)
    return MachineCosts(
        snapshot,
        history,
        COST,
        cost_per_hour(snapshot, COST),
        last,
        run_cost,
        18_420,
        cost_between(history, start, end, COST),
    )


class FixedDirectory(DataDirectory):
    """The dashboard's reads over the fixed data above; its writes refuse. No data directory is opened."""

    def __init__(self) -> None:  # the parent's would open ROOT
        self.root = ROOT
        self.cost = COST
        self.lock = threading.RLock()
        self.closed = False
        self._machine = _machine()

    def close(self) -> None:
        self.closed = True

    # -- reads ----------------------------------------------------------------------------------

    def overview(self) -> list[ModelHealth]:
        monitors = {j.model: j for j in JOBS if j.job == "monitor"}
        return [
            ModelHealth(
                "churn", 1, 2, CANARY, Traffic("churn", 60.0, 1_284, 21.4, 3.2, 11.8, 0.0016), 2, monitors["churn"]
            ),
            ModelHealth(
                "demand", 1, None, None, Traffic("demand", 60.0, 312, 5.2, 4.9, 17.3, 0.0), 0, monitors["demand"]
            ),
        ]

    def models(self) -> list[str]:
        return ["churn", "demand"]

    def versions(self) -> list[tuple[ModelVersion, int | None, int | None]]:
        return list(VERSIONS)

    def comparison(self, model: str, version: int, production: int) -> Comparison:
        assert (model, version, production) == ("churn", 2, 1), (model, version, production)
        return COMPARISON

    def deployment(self, model: str) -> Deployment | None:
        return CANARY if model == "churn" else None

    def rollback_target(self, model: str) -> int | None:
        return None  # each model's first production version still serves

    def traffic_history(self) -> dict[str, pl.DataFrame]:
        return {model: story.traffic for model, story in STORIES.items()}

    def events(self, limit: int = 30) -> list[Event]:
        return EVENTS[:limit]

    def monitoring(self, model: str) -> ModelMonitoring:
        return ModelMonitoring(STORIES[model], True, DISTRIBUTIONS[model], _segments(model))

    def alerts(self, include_resolved: bool) -> list[Alert]:
        return [a for a in ALERTS if include_resolved or a.status != "resolved"]

    def jobs(self) -> list[JobInfo]:
        return list(JOBS)

    def runs(self, limit: int = 100) -> list[RunSummary]:
        return RUNS[:limit]

    def run(self, run_id: str) -> RunDetail:
        summary = next(r for r in RUNS if r.id.startswith(run_id))
        running = summary.status == "running"
        return RunDetail(
            run=summary,
            params={"learning_rate": 0.05, "num_leaves": 31, "num_boost_round": 1000},
            metrics={"train.auc": 0.8113 if running else 0.8741, "train.loss": CURVE[-1]},
            metric_points={"train.loss": len(CURVE), "train.auc": 1},
            tags={},
            artifacts={},
            environment={},
            data=[],
            child_runs=[],
        )

    def curves(self, detail: RunDetail) -> dict[str, list[float]]:
        return {"train.loss": CURVE[: 34 if detail.run.status == "running" else None]}

    def machine(self) -> MachineCosts:
        return self._machine

    # -- writes: a snapshot never acts ----------------------------------------------------------

    def _refuse(self, *args, **kwargs):
        raise AssertionError("the snapshot tests' fixed data takes no action")

    promote = rollback = start_deployment = advance_deployment = abort_deployment = _refuse
    acknowledge = resolve = run_job = _refuse

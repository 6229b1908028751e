"""What a person reads about one model's monitoring, assembled once for every renderer.

The dashboard's Monitoring tab and the HTML report (`appliance report`) both draw a ``MonitoringStory`` and
compute nothing of their own, so the two never tell it differently. Two rules make the story readable:

- Each data window is told by **the version that served it**: the one with the most rows in that window. So
  the story runs on across a promotion (the old version's windows, then the new one's) instead of starting over
  at it, and a canary's few rows in a window its production served do not stand for that window.
- Its time axis is those **data windows** (event time). Rows stamped with a run's time (the
  machine and pipeline checks, and the serving check's ``log_overflow``: once per run, not per window) are
  told apart in ``operations``: among the data's days they sort after them and leave every data column empty.
  A data window's row spans its window (``window_end > window_start``); a run's row is an instant.
- Every statistic is read against **its own threshold** (``score``): a PSI of 5.5 on a 53-row window whose
  threshold chance puts at 4 is less alarming than a KS of 0.09 against 0.045, and "largest value" mixes
  the two scales where "largest score" does not.

The recorded reference-vs-current distributions of a window (``distributions``) are read here too; the
monitor job records them (``monitoring.distributions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from appliance.home import Home
from appliance.monitoring.store import recorded_distributions, results
from appliance.task import higher_is_better

WINDOW_START = pl.Datetime("us", "UTC")  # a window's start as the results hold it (windows.CHECK_SCHEMA)
RUN_CHECKS = ("machine", "pipeline")  # checks stamped with the run's time, never a data window
# A run's own rows, never a data window: those checks, and rows stamped with the run's instant (log overflow)
RUN_ROWS = (pl.col("window_end") <= pl.col("window_start")) | pl.col("check").is_in(RUN_CHECKS)
_SCORED = pl.Schema(
    {
        "window_start": WINDOW_START,
        "feature": pl.String(),
        "method": pl.String(),
        "value": pl.Float64(),
        "threshold": pl.Float64(),
        "alert": pl.Boolean(),
        "rows": pl.Int64(),
        "score": pl.Float64(),
    }
)
_PERFORMANCE = pl.Schema(
    {
        "window_start": WINDOW_START,
        "realized": pl.Float64(),
        "estimated": pl.Float64(),
        "lower": pl.Float64(),
        "upper": pl.Float64(),
        "threshold": pl.Float64(),
        "rows": pl.Int64(),  # the window's rows (served), labelled or not
        "labelled": pl.Int64(),  # of them, those whose label arrived: what ``realized`` is measured on
        "alert": pl.Boolean(),
    }
)
TRAFFIC_METHODS = ("requests", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_rps")
_TRAFFIC = pl.Schema({"window_start": WINDOW_START, **dict.fromkeys(TRAFFIC_METHODS, pl.Float64())})
_OPERATIONS = pl.Schema(
    {
        "at": WINDOW_START,
        "check": pl.String(),
        "feature": pl.String(),
        "method": pl.String(),
        "value": pl.Float64(),
    }
)
# Renderers draw scores up to this many times their threshold: one window far past its line (a part-day a
# new version served, a 50-row window) would flatten every other line; the value itself is still shown.
SCORE_DRAWN_UP_TO = 4.0
# Quality checks that alert below their threshold (a window with too few rows): their score is
# threshold / value, so that past the line is above 1.0 for every statistic.
ALERT_BELOW = frozenset({"volume_low"})


@dataclass(frozen=True)
class Distribution:
    feature: str
    kind: str  # "numeric" | "categorical"
    labels: list[str]  # bin labels ("[12.5, 20)", "≥ 80") or categories, then "(other)", "(missing)" where present
    reference: list[float]  # shares of the reference rows per label (sum 1)
    current: list[float]  # shares of the window's rows per label (sum 1, or all 0 when the window has no rows)
    reference_rows: int
    current_rows: int
    window_start: datetime  # UTC


@dataclass(frozen=True)
class MonitoringStory:
    model: str
    served_version: int | None  # the version production serves now; else the newest version with results
    versions: list[int]  # versions with results, oldest first
    windows: list[datetime]  # the data windows (event time, UTC), oldest first
    eras: list[tuple[int, datetime, datetime]]  # (version, first window, last window) each version served, in turn
    drift: pl.DataFrame  # each window's serving version's drift: window_start, feature, method, value, threshold,
    # alert, rows, score (value / threshold; null without a positive threshold). Includes 'prediction' rows.
    quality: pl.DataFrame  # its quality rows, same columns (volume_low: threshold / value)
    metric: str  # the judged metric (auc for a binary model, whose estimate is AUC; else the spec's)
    lower_is_better: bool
    performance: pl.DataFrame  # a row per data window: window_start, realized, estimated, lower, upper,
    # threshold, rows, labelled, alert
    traffic: pl.DataFrame  # a row per data window: window_start, requests, error_rate, latency_p50_ms,
    # latency_p95_ms, latency_p99_ms, throughput_rps
    operations: pl.DataFrame  # rows stamped with a run's time: at, check, feature, method, value


def monitoring_story(home: Home, model: str, since: datetime | date | str | None = None) -> MonitoringStory:
    """One model's monitoring story from its stored results (those of windows from ``since`` on). NotFound for
    a model that is not registered; a story without windows for one that has no results yet."""
    found = results(home, model, since=since)
    spec = home.spec(model)
    metric = "auc" if spec.target.task == "binary" else spec.metric
    versions = sorted(found["version"].unique().to_list())
    production = home.registry.alias(model, "production")
    served = production if production is not None else (versions[-1] if versions else None)
    windowed = found.filter(~RUN_ROWS)
    serving = _serving_versions(windowed)
    data = windowed.join(serving, on=["window_start", "version"], how="semi")
    windows = serving.select("window_start")
    return MonitoringStory(
        model=model,
        served_version=served,
        versions=versions,
        windows=windows["window_start"].to_list(),
        eras=_eras(serving),
        drift=_scored(data.filter(check="drift")),
        quality=_scored(data.filter(check="quality")),
        metric=metric,
        lower_is_better=not higher_is_better(metric),
        performance=_performance(data, windows, metric),
        traffic=_traffic(data, windows),
        operations=found.filter(RUN_ROWS)
        .select(at="window_start", check="check", feature="feature", method="method", value="value")
        .sort("at", "check", "feature", "method")
        .cast(_OPERATIONS),
    )


def _serving_versions(windowed: pl.DataFrame) -> pl.DataFrame:
    """window_start, version: for each data window the version with the most rows in it (on a tie the older,
    which was serving: a shadow answers every request too), oldest window first."""
    by_rows = windowed.group_by("window_start", "version").agg(pl.col("rows").max())
    return (
        by_rows.sort(["rows", "version"], descending=[True, False])
        .group_by("window_start", maintain_order=True)
        .first()
        .select("window_start", "version")
        .sort("window_start")
    )


def _eras(serving: pl.DataFrame) -> list[tuple[int, datetime, datetime]]:
    """Runs of consecutive windows served by one version."""
    eras: list[tuple[int, datetime, datetime]] = []
    for start, version in serving.iter_rows():
        if eras and eras[-1][0] == version:
            eras[-1] = (version, eras[-1][1], start)
        else:
            eras.append((version, start, start))
    return eras


def _scored(rows: pl.DataFrame) -> pl.DataFrame:
    """Check rows with each value against its own threshold: past the line is above 1.0."""
    usable = pl.col("threshold").is_not_null() & pl.col("threshold").is_not_nan() & (pl.col("threshold") > 0)
    ratio = (
        pl.when(pl.col("method").is_in(ALERT_BELOW))
        .then(pl.col("threshold") / pl.col("value"))
        .otherwise(pl.col("value") / pl.col("threshold"))
    )
    return (
        rows.select("window_start", "feature", "method", "value", "threshold", "alert", "rows")
        .with_columns(score=pl.when(usable).then(ratio).fill_nan(None))
        .sort("window_start", "feature", "method")
        .cast(_SCORED)
    )


def _performance(data: pl.DataFrame, windows: pl.DataFrame, metric: str) -> pl.DataFrame:
    """The judged metric per window: realized from labels beside its estimate and band (all rows' model)."""
    overall = data.filter(pl.col("feature") == "*")
    realized = overall.filter(check="performance", method=metric).select(
        "window_start", realized="value", labelled="rows", realized_threshold="threshold", realized_alert="alert"
    )
    estimated = overall.filter(check="estimated")
    band = (
        estimated.filter(method=metric)
        .select("window_start", estimated="value", estimated_threshold="threshold", estimated_alert="alert")
        .join(_method(estimated, f"{metric}_lower", "lower"), on="window_start", how="left")
        .join(_method(estimated, f"{metric}_upper", "upper"), on="window_start", how="left")
    )
    served = _method(overall.filter(check="serving"), "requests", "rows", "rows")
    frame = (
        windows.join(realized, on="window_start", how="left")
        .join(band, on="window_start", how="left")
        .join(served, on="window_start", how="left")
    )
    finite = [pl.col(c).fill_nan(None) for c in ("realized", "estimated", "lower", "upper")]
    return frame.select(
        "window_start",
        *finite,
        threshold=pl.coalesce(
            pl.col("realized_threshold").fill_nan(None), pl.col("estimated_threshold").fill_nan(None)
        ),
        rows="rows",
        labelled=pl.col("labelled").fill_null(0),
        alert=pl.col("realized_alert").fill_null(False) | pl.col("estimated_alert").fill_null(False),
    ).cast(_PERFORMANCE)


def _method(check_rows: pl.DataFrame, method: str, name: str, column: str = "value") -> pl.DataFrame:
    """One method's ``column`` per window, named ``name``."""
    return check_rows.filter(method=method).select("window_start", pl.col(column).alias(name))


def _traffic(data: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    serving = data.filter(pl.col("check") == "serving", pl.col("feature") == "*")
    frame = windows
    for method in TRAFFIC_METHODS:
        frame = frame.join(_method(serving, method, method), on="window_start", how="left")
    return frame.with_columns(pl.col(TRAFFIC_METHODS).fill_nan(None)).cast(_TRAFFIC)


def distributions(home: Home, model: str, version: int, window_start: datetime | None = None) -> list[Distribution]:
    """The reference-vs-current distributions recorded for one window of a version (the newest recorded
    window when None), a feature each in the model's feature order; [] where none were recorded (windows
    monitored before they were). NotFound for a model that is not registered."""
    return [Distribution(**row) for row in recorded_distributions(home, model, version, window_start)]

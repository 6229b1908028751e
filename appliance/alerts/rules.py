"""The spec's ``[[alerts]]`` rules and their evaluation over a frame of monitoring results.

A rule compares one metric of the monitoring results (a ``check`` and a ``method``, optionally one
``feature``) with a threshold. It fires for a target (the feature, or the whole model) when the
metric is past the threshold in the latest ``for_windows`` windows of the frame in a row.

The defaults are the reference architecture's alert table, plus a prediction-log overflow rule.
Two of them read metrics derived here rather than stored by the monitor:

- ``drift_score`` (check ``drift``): per window, the worst relative excess of a drift statistic over its
  threshold, ``max(1 - threshold / value)`` over the window's drift rows that alert (feature, prediction
  and reconstruction drift), and 0 when none does. 0.3 means some statistic is at least 1.43× its
  threshold. On the sample's feature drift it is 0 on every clean day and 0.36-0.57 on every drift day.
- the accuracy rules read the realized AUC (``performance``/``auc``, from labels) and fall back to
  CBPE's estimate (``estimated``/``auc``) for windows without labels.
"""

from __future__ import annotations

from typing import Literal

import msgspec
import polars as pl

Check = Literal["quality", "drift", "prediction", "performance", "estimated", "serving", "machine", "pipeline"]
MODEL_TARGET = "*"              # the target of a rule about the whole model (rows without a feature, or '*')
DRIFT_SCORE = "drift_score"


class AlertRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    check: Check
    method: str
    op: Literal["<", ">"]
    threshold: float
    severity: Literal["warning", "critical"] = "warning"
    action: Literal["log", "webhook", "retrain"] = "log"
    feature: str | None = None          # only this feature's rows (default: every target separately; '*': the model)
    min_rows: int = 0                   # windows with fewer rows are not judged (noisy AUCs of a few labels)
    for_windows: int = 1                # consecutive windows past the threshold before it fires
    fallback_check: Check | None = None  # a window without the metric reads this one instead
    fallback_method: str | None = None
    url: str | None = None              # webhook: where the alert is POSTed as JSON

    def __post_init__(self) -> None:
        if self.for_windows < 1:
            raise ValueError(f"alert '{self.name}': for_windows must be at least 1")
        if self.action == "webhook" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(f"alert '{self.name}': a webhook action needs url = 'http://…'")
        if (self.fallback_check is None) != (self.fallback_method is None):
            raise ValueError(f"alert '{self.name}': give both fallback_check and fallback_method, or neither")

    def breached(self, value: float) -> bool:
        return value < self.threshold if self.op == "<" else value > self.threshold


DEFAULT_ALERTS: list[AlertRule] = [
    AlertRule("accuracy-low", "performance", "auc", "<", 0.85, "warning", "log", feature=MODEL_TARGET,
              min_rows=200, fallback_check="estimated", fallback_method="auc"),
    AlertRule("accuracy-critical", "performance", "auc", "<", 0.80, "critical", "retrain", feature=MODEL_TARGET,
              min_rows=200, fallback_check="estimated", fallback_method="auc"),
    AlertRule("drift", "drift", DRIFT_SCORE, ">", 0.3, "warning", "log"),
    AlertRule("missing-values", "quality", "missing_rate", ">", 0.10, "critical", "log"),
    AlertRule("latency-p99", "serving", "latency_p99_ms", ">", 200.0, "warning", "log"),
    AlertRule("pipeline-failing", "pipeline", "failure_streak", ">", 2, "critical", "log"),
    AlertRule("prediction-log-overflow", "serving", "log_overflow", ">", 0, "critical", "log"),
]


class Firing(msgspec.Struct, frozen=True):
    """A rule past its threshold for one target, at the latest window it read."""

    rule: AlertRule
    target: str
    value: float
    window_start: str | None
    window_end: str | None

    @property
    def message(self) -> str:
        what = self.rule.method + (f" of {self.target}" if self.target != MODEL_TARGET else "")
        return f"{what} = {self.value:.4g} {self.rule.op} {self.rule.threshold:g} ({self.rule.severity})"


def with_drift_score(rows: pl.DataFrame) -> pl.DataFrame:
    """The result rows plus one ``drift``/``drift_score`` row per model, version and window (see above)."""
    drift = rows.filter((pl.col("check") == "drift") & (pl.col("method") != DRIFT_SCORE))
    if drift.height == 0:
        return rows
    excess = pl.when(pl.col("alert") & (pl.col("value") > 0)).then(1 - pl.col("threshold") / pl.col("value"))
    scores = (drift.group_by("model", "version", "window_start", "window_end", maintain_order=True)
              .agg(value=excess.otherwise(0.0).max(), rows=pl.col("rows").max(), computed_at=pl.col("computed_at").max())
              .with_columns(check=pl.lit("drift"), feature=pl.lit(None, pl.Utf8), method=pl.lit(DRIFT_SCORE),
                            threshold=pl.lit(None, pl.Float64), alert=pl.col("value") > 0))
    return pl.concat([rows, scores.select(rows.columns)], how="vertical_relaxed")


def evaluate(rule: AlertRule, rows: pl.DataFrame) -> list[Firing]:
    """Where ``rule`` fires in a frame of result rows: one Firing per target at most."""
    primary = _metric(rows, rule.check, rule.method, rule)
    if rule.fallback_check is not None:
        fallback = _metric(rows, rule.fallback_check, rule.fallback_method, rule)
        covered = primary.select("target", "window_end")
        primary = pl.concat([primary, fallback.join(covered, on=["target", "window_end"], how="anti")])
    firings = []
    for (target,), series in primary.sort("window_end").group_by("target", maintain_order=True):
        latest = series.tail(rule.for_windows)
        if latest.height < rule.for_windows or not all(rule.breached(v) for v in latest["value"]):
            continue
        last = latest.row(-1, named=True)
        firings.append(Firing(rule, target, last["value"], _iso(last["window_start"]), _iso(last["window_end"])))
    return firings


def _metric(rows: pl.DataFrame, check: str, method: str, rule: AlertRule) -> pl.DataFrame:
    """One metric's (target, window, value) rows in the windows the rule judges, without missing values."""
    out = rows.filter((pl.col("check") == check) & (pl.col("method") == method)
                      & (pl.col("rows").fill_null(0) >= rule.min_rows))
    out = out.select(target=pl.col("feature").cast(pl.Utf8).fill_null(MODEL_TARGET),
                     window_start="window_start", window_end="window_end", value=pl.col("value").cast(pl.Float64))
    if rule.feature is not None:
        out = out.filter(pl.col("target") == rule.feature)
    return out.filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)

"""Evaluation of the spec's ``[[alerts]]`` rules (``appliance.spec.alerts``) over a frame of monitoring results.

A rule fires for a target (the feature, or the whole model) when its metric is past the threshold in the
latest ``for_windows`` windows of the frame in a row; ``with_drift_score`` derives the ``drift_score`` metric
the default drift rule reads. The rules' meaning, defaults and noise models are documented with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec
import polars as pl

from appliance.spec.alerts import CLASS_SHARE, DRIFT_SCORE, MODEL_TARGET, AlertRule
from appliance.task import SCALED


class Firing(msgspec.Struct, frozen=True):
    """A rule past its threshold for one target, at the latest window it read."""

    rule: AlertRule
    target: str
    value: float
    window_start: str | None
    window_end: str | None
    threshold: float = math.nan  # what the value was compared with (a relative rule: reference ∓ margin)
    check: str = ""  # where the value came from: the rule's check, or its fallback's
    version: int | None = None  # the version that served the window
    reference: float | None = None  # a relative rule: that version's reference value
    rows: int = 0  # rows of the window

    @property
    def message(self) -> str:
        rule = self.rule
        of = f" of {self.target}" if self.target != MODEL_TARGET else ""
        if rule.relative_to is None or self.reference is None:
            threshold = self.threshold if self.threshold == self.threshold else rule.threshold
            return f"{rule.method}{of} = {self.value:.4g} {rule.op} {threshold:g} ({rule.severity})"
        source = {"performance": "realized", "estimated": "estimated"}.get(self.check, self.check)
        method = rule.fallback_method if self.check == rule.fallback_check != rule.check else rule.method
        side = "below" if rule.op == "<" else "above"
        margin = abs(self.reference - self.threshold)
        rows = f"{self.rows:,} labelled rows" if self.check == "performance" else f"{self.rows:,} rows"
        if rule.method in SCALED:
            noise = f", {rule.threshold:.0%} of it"
        else:
            noise = "" if margin <= rule.threshold + 1e-12 else f", {rule.noise_z:g} standard errors at {rows}"
        return (
            f"{source} {'AUC' if method == 'auc' else method}{of} {self.value:.3f} is "
            f"{abs(self.value - self.reference):.3f} {side} v{self.version}'s reference {self.reference:.3f} "
            f"(more than {margin:.3f}{noise}: {rule.severity})"
        )


def with_drift_score(rows: pl.DataFrame) -> pl.DataFrame:
    """The result rows plus one ``drift``/``drift_score`` row per model, version and window (see above)."""
    drift = rows.filter((pl.col("check") == "drift") & (pl.col("method") != DRIFT_SCORE))
    if drift.height == 0:
        return rows
    excess = pl.when(pl.col("alert") & (pl.col("value") > 0)).then(1 - pl.col("threshold") / pl.col("value"))
    scores = (
        drift.group_by("model", "version", "window_start", "window_end", maintain_order=True)
        .agg(value=excess.otherwise(0.0).max(), rows=pl.col("rows").max(), computed_at=pl.col("computed_at").max())
        .with_columns(
            check=pl.lit("drift"),
            feature=pl.lit(None, pl.Utf8),
            method=pl.lit(DRIFT_SCORE),
            threshold=pl.lit(None, pl.Float64),
            alert=pl.col("value") > 0,
        )
    )
    return pl.concat([rows, scores.select(rows.columns)], how="vertical_relaxed")


def evaluate(
    rule: AlertRule, rows: pl.DataFrame, references: Mapping[int, Mapping[str, float]] | None = None
) -> list[Firing]:
    """Where ``rule`` fires in a frame of result rows: one Firing per target at most.

    ``references`` maps a version to its reference metrics (its held-out evaluation's ``auc``,
    ``positive_rate``, …); a relative rule does not judge windows of a version without its metric there."""
    primary = _metric(rows, rule.check, rule.method, rule)
    if rule.fallback_check is not None:
        fallback = _metric(rows, rule.fallback_check, rule.fallback_method, rule)
        covered = primary.select("target", "window_end")
        primary = pl.concat([primary, fallback.join(covered, on=["target", "window_end"], how="anti")])
    firings = []
    for (target,), series in primary.sort("window_end").group_by("target", maintain_order=True):
        latest = list(series.tail(rule.for_windows).iter_rows(named=True))
        if len(latest) < rule.for_windows:
            continue
        bounds = [_bound(rule, window, references) for window in latest]
        if not all(b is not None and rule.breached(w["value"], b[0]) for w, b in zip(latest, bounds)):
            continue
        last, (threshold, reference) = latest[-1], bounds[-1]
        firings.append(
            Firing(
                rule,
                target,
                last["value"],
                _iso(last["window_start"]),
                _iso(last["window_end"]),
                threshold,
                last["check"],
                last["version"],
                reference,
                last["rows"],
            )
        )
    return firings


def _bound(
    rule: AlertRule, window: dict, references: Mapping[int, Mapping[str, float]] | None
) -> tuple[float, float | None] | None:
    """(what the window's value is compared with, the reference it derives from); None: not judged."""
    if rule.relative_to is None:
        return rule.threshold, None
    metrics = (references or {}).get(window["version"]) or {}
    reference, positive_rate = metrics.get(rule.method), metrics.get("positive_rate")
    if reference is None or not math.isfinite(reference):
        return None
    if positive_rate is not None and not 0 < positive_rate < 1:
        positive_rate = None
    shares = [v for k, v in metrics.items() if k.startswith(CLASS_SHARE)]
    margin = rule.margin(reference, positive_rate, window["rows"], shares)
    return (reference - margin if rule.op == "<" else reference + margin), reference


def _metric(rows: pl.DataFrame, check: str, method: str, rule: AlertRule) -> pl.DataFrame:
    """One metric's (target, window, value) rows in the windows the rule judges, without missing values."""
    out = rows.filter(
        (pl.col("check") == check) & (pl.col("method") == method) & (pl.col("rows").fill_null(0) >= rule.min_rows)
    )
    out = out.select(
        target=pl.col("feature").cast(pl.Utf8).fill_null(MODEL_TARGET),
        window_start="window_start",
        window_end="window_end",
        value=pl.col("value").cast(pl.Float64),
        check=pl.lit(check, pl.Utf8),
        version=pl.col("version").cast(pl.Int64),
        rows=pl.col("rows").fill_null(0).cast(pl.Int64),
    )
    if rule.feature is not None:
        out = out.filter(pl.col("target") == rule.feature)
    return out.filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)

"""Monitoring results as compact text tables, for `appliance monitor` (and any text view).

A line is one window of one version: on the day a new version took over, each version's rows are its own
line, never mixed. Where realized performance falls outside its estimate's band, a note says which one to
trust and why (``estimate_disagreements``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import polars as pl

from appliance.monitoring.performance import TASK_METRICS
from appliance.monitoring.story import RUN_ROWS
from appliance.task import DEFAULT_METRIC

WINDOWED = ("quality", "drift", "performance", "estimated", "serving")
WINDOW = ["window_start", "version"]  # a table's line: one window of one version


def monitor_report(
    frame: pl.DataFrame, check: str | None, model: str = "MODEL", min_window_rows: int | None = None
) -> list[str]:
    """Lines for one check, or the overview (a line per window) without one; ``frame`` holds every check of
    ``model`` (which the hint names when there are none yet). ``min_window_rows``: the spec's, below which a
    window is reported but never alerts; the overview and the drift table mark such windows (none without it)."""
    if check is not None:
        frame = frame.filter(pl.col("check").is_in(["performance", "estimated"] if check == "performance" else [check]))
    if frame.is_empty():
        return [f"no monitoring results yet; run `appliance jobs run monitor {model}`"]
    if check == "drift":
        return _drift(frame, min_window_rows)
    if check == "performance":
        return _performance(frame)
    if check is None:
        return _overview(frame, min_window_rows)
    rows = [
        (
            _window(r["window_start"], check),
            _version(r["version"]),
            r["feature"],
            r["method"],
            _number(r["value"]),
            _number(r["threshold"]),
            str(r["rows"]),
            "ALERT" if r["alert"] else "",
        )
        for r in frame.sort("window_start", "version", "feature", "method").iter_rows(named=True)
    ]
    return table(("window", "version", "feature", "method", "value", "threshold", "rows", "alert"), rows)


def _drift(frame: pl.DataFrame, min_window_rows: int | None) -> list[str]:
    """Windows × features; each cell the method furthest over (or nearest to) its threshold, '!' if it alerts."""
    scored = frame.with_columns(ratio=pl.col("value") / pl.col("threshold")).sort(
        "ratio", descending=True, nulls_last=True
    )
    worst = scored.group_by("window_start", "version", "feature", maintain_order=True).first()
    features = sorted(worst["feature"].unique().to_list(), key=lambda f: (f in ("*", "prediction"), f))
    rows = []
    for (start, version), part in worst.sort("window_start", "version").group_by(
        "window_start", "version", maintain_order=True
    ):
        cells = {
            r["feature"]: f"{r['method']} {_number(r['value'])}{'!' if r['alert'] else ''}"
            for r in part.iter_rows(named=True)
        }
        rows.append(
            (
                _window(start, "drift"),
                _version(version),
                _rows(part["rows"].max(), min_window_rows),
                *(cells.get(f, "-") for f in features),
            )
        )
    header = ("window", "version", "rows", *("multivariate" if f == "*" else f for f in features))
    return (
        table(header, rows)
        + ["(each cell: the statistic furthest over its threshold; '!' alerts)"]
        + _not_judged(rows, min_window_rows)
    )


def _performance(frame: pl.DataFrame) -> list[str]:
    """A line per window: realized metrics from labels beside each estimate (CBPE, DLE) and its band, in the
    task's terms (read from the metrics the rows hold); a binary model's table is AUC, precision, recall, F1
    and the estimated AUC."""
    overall = frame.filter(pl.col("feature") == "*")
    kind = _task_of(frame)
    performance = overall.filter(check="performance")
    realized = [*TASK_METRICS[kind], *sorted(set(performance["method"]) - set(TASK_METRICS[kind]))]
    estimated = sorted(
        (m for m in overall.filter(check="estimated")["method"].unique() if not m.endswith(("_lower", "_upper"))),
        key=lambda m: (realized.index(m) if m in realized else len(realized), m),
    )
    wide = overall.pivot(on=["check", "method"], index=WINDOW, values="value", aggregate_function="first").sort(WINDOW)
    labelled = performance.filter(method=realized[0]).select(*WINDOW, labelled="rows")
    alerts = overall.group_by(WINDOW).agg(pl.col("alert").any())
    wide = wide.join(labelled, on=WINDOW, how="left").join(alerts, on=WINDOW, how="left")

    def get(row: dict, check: str, method: str) -> str:
        return _number(row.get(f'{{"{check}","{method}"}}'))

    rows = [
        (
            _window(r["window_start"], "performance"),
            _version(r["version"]),
            str(r["labelled"] or 0),
            *(get(r, "performance", m) for m in realized),
            *(
                f"{get(r, 'estimated', m)} [{get(r, 'estimated', f'{m}_lower')}, {get(r, 'estimated', f'{m}_upper')}]"
                for m in estimated
            ),
            "ALERT" if r["alert"] else "",
        )
        for r in wide.iter_rows(named=True)
    ]
    header = ("window", "version", "labelled", *realized, *(f"estimated {m} [band]" for m in estimated), "alert")
    return table(header, rows) + disagreement_notes(overall)


def _task_of(frame: pl.DataFrame) -> str:
    """Which task's results these are, from the metrics the performance rows hold (binary when none do)."""
    methods = set(frame.filter(pl.col("check").is_in(["performance", "estimated"]))["method"])
    return next((kind for kind in ("regression", "multiclass") if methods & set(TASK_METRICS[kind])), "binary")


def _headline(frame: pl.DataFrame, kind: str) -> str:
    """The metric an overview shows: the one with a limit (it judges the model), else the task's default."""
    judged = frame.filter(
        (pl.col("check") == "performance")
        & (pl.col("feature") == "*")
        & pl.col("threshold").is_not_null()
        & pl.col("threshold").is_not_nan()
    )
    return judged["method"][0] if judged.height else DEFAULT_METRIC[kind]


def _overview(frame: pl.DataFrame, min_window_rows: int | None) -> list[str]:
    """A line per window: alerts per check, the realized and estimated metric (AUC for a binary model), p99
    latency. The checks a run stamps with its own time make no line (``story.RUN_ROWS``)."""
    windowed = frame.filter(pl.col("check").is_in(WINDOWED) & ~RUN_ROWS)
    if windowed.is_empty():
        return ["no traffic in the prediction log yet for the production version"]
    kind = _task_of(windowed)
    metric = "auc" if kind == "binary" else _headline(windowed, kind)
    rows = []
    for (start, version), part in windowed.sort(WINDOW).group_by(WINDOW, maintain_order=True):

        def value(check: str, method: str) -> str:  # called only within this iteration
            hit = part.filter(check=check, feature="*", method=method)["value"]  # noqa: B023
            return _number(hit[0]) if hit.len() else "-"

        counts = {c: int(part.filter(check=c)["alert"].sum()) for c in ("quality", "drift")}
        rows.append(
            (
                _window(start, ""),
                _version(version),
                _rows(part.filter(check="serving", feature="*")["rows"].max() or 0, min_window_rows),
                str(counts["quality"]),
                str(counts["drift"]),
                value("performance", metric),
                value("estimated", metric),
                value("serving", "latency_p99_ms"),
            )
        )
    header = ("window", "version", "rows", "quality alerts", "drift alerts", metric, f"estimated {metric}", "p99 ms")
    return table(header, rows) + _not_judged(rows, min_window_rows) + disagreement_notes(windowed)


NOT_JUDGED = "*"  # beside a window's rows: fewer than min_window_rows, so nothing in it alerts


def _rows(rows: object, min_window_rows: int | None) -> str:
    """A window's rows, marked when there are too few for any of its checks to alert."""
    count = int(rows) if isinstance(rows, int | float) else 0
    small = min_window_rows is not None and count < min_window_rows
    return f"{count}{NOT_JUDGED if small else ''}"


def _not_judged(rows: Sequence[Sequence[str]], min_window_rows: int | None) -> list[str]:
    """The footnote for the marked windows, when a table has any (its rows column is the third)."""
    if not any(row[2].endswith(NOT_JUDGED) for row in rows):
        return []
    return [
        f"({NOT_JUDGED} not judged: fewer than [monitoring] min_window_rows = {min_window_rows} rows, so reported "
        "but never alerts, whatever its values)"
    ]


class Disagreement(NamedTuple):
    """A window whose realized metric (from labels) is outside the band of its estimate (CBPE, DLE)."""

    window_start: datetime
    version: int | None
    metric: str
    realized: float
    estimated: float
    lower: float
    upper: float
    labelled: int


def estimate_disagreements(frame: pl.DataFrame) -> list[Disagreement]:
    """Windows where the realized value of a metric lies outside its estimate's band. The band (NannyML's, three
    standard errors of the estimate at the window's size) already spans the realized value's own sampling
    noise, so outside it the two disagree beyond chance. The usual cause: the estimate reads the model's
    confidence on the inputs it saw, so it follows a shift in the inputs (covariate shift) but cannot see a
    change in how inputs relate to outcomes (concept drift); the realized value, from outcomes, can."""
    overall = frame.filter(pl.col("feature") == "*")
    realized = overall.filter(check="performance").select(*WINDOW, "method", realized="value", labelled="rows")
    estimated = overall.filter(check="estimated")
    bands = (
        estimated.filter(~pl.col("method").str.ends_with("_lower") & ~pl.col("method").str.ends_with("_upper"))
        .select(*WINDOW, "method", estimated="value")
        .join(
            estimated.filter(pl.col("method").str.ends_with("_lower")).select(
                *WINDOW, method=pl.col("method").str.strip_suffix("_lower"), lower="value"
            ),
            on=[*WINDOW, "method"],
            nulls_equal=True,
        )
        .join(
            estimated.filter(pl.col("method").str.ends_with("_upper")).select(
                *WINDOW, method=pl.col("method").str.strip_suffix("_upper"), upper="value"
            ),
            on=[*WINDOW, "method"],
            nulls_equal=True,
        )
    )
    both = realized.join(bands, on=[*WINDOW, "method"], nulls_equal=True).filter(
        pl.col("realized").is_not_nan()
        & pl.col("lower").is_not_nan()
        & pl.col("upper").is_not_nan()
        & ((pl.col("realized") < pl.col("lower")) | (pl.col("realized") > pl.col("upper")))
    )
    return [
        Disagreement(
            r["window_start"],
            r["version"],
            r["method"],
            r["realized"],
            r["estimated"],
            r["lower"],
            r["upper"],
            int(r["labelled"] or 0),
        )
        for r in both.sort(*WINDOW, "method").iter_rows(named=True)
    ]


def disagreement_notes(frame: pl.DataFrame) -> list[str]:
    """A note per window where realized performance and its estimate disagree beyond the band: which to trust."""
    found = estimate_disagreements(frame)
    if not found:
        return []
    lines = [
        "",
        "realized outside the estimate's band (trust the realized value: the estimate sees shifts in the "
        "inputs, not a change in how they relate to outcomes, i.e. concept drift):",
    ]
    for d in found:
        lines.append(
            f"  {_window(d.window_start, '')} {_version(d.version)}: {d.metric} {_number(d.realized)} from "
            f"{d.labelled:,} labelled rows, estimated {_number(d.estimated)} "
            f"[{_number(d.lower)}, {_number(d.upper)}]"
        )
    return lines


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in (header, *rows)]


def _window(start, check: str) -> str:
    if check in ("machine", "pipeline"):
        return start.strftime("%Y-%m-%d %H:%M:%S")
    if start.hour or start.minute:
        return start.strftime("%Y-%m-%d %H:%M")
    return start.strftime("%Y-%m-%d")


def _version(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"

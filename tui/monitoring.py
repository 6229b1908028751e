"""Monitoring: per-feature drift over windows as a heat table, drift and accuracy over time as
charts, segments and data-quality findings — from the stored monitoring results."""

from __future__ import annotations

from typing import ClassVar

import polars as pl
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from appliance.monitoring.report import disagreement_notes
from appliance.task import LOWER_IS_BETTER, metric_label
from tui.charts import column_chart, heat
from tui.overview import when
from tui.view import Empty, View

HEAT_WINDOWS = 8
NO_RESULTS = "no monitoring results yet — run `appliance replay`"


def of_check(frame: pl.DataFrame, *words: str) -> pl.DataFrame:
    """Rows whose check name contains any of the words."""
    return frame.filter(pl.any_horizontal(pl.col("check").str.contains(w) for w in words))


def per_window(frame: pl.DataFrame, how: pl.Expr) -> list[float]:
    """One value per window, oldest first."""
    if frame.is_empty():
        return []
    return frame.group_by("window_start").agg(how.alias("v")).sort("window_start")["v"].to_list()


class Monitoring(View):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("m", "next_model", "Next model")]
    DEFAULT_CSS = """
    Monitoring .title { text-style: bold; padding-top: 1; }
    Monitoring DataTable { height: auto; max-height: 14; }
    """

    def compose(self) -> ComposeResult:
        yield Empty("", id="monitoring-empty")
        with VerticalScroll(id="monitoring-body"):
            yield Static("", id="monitoring-model", classes="title")
            yield Static("Feature drift by window (colour: value against its threshold)", classes="title")
            yield DataTable(id="drift-heat", cursor_type="none")
            yield Static("", id="drift-chart", markup=False)
            yield Static("", id="accuracy-chart", markup=False)
            yield Static("Segments (latest labelled window)", classes="title")
            yield DataTable(id="segments", cursor_type="none")
            yield Static("Data-quality findings", classes="title")
            yield DataTable(id="quality", cursor_type="none")

    def on_mount(self) -> None:
        self.model_index = 0
        super().on_mount()

    def gather(self) -> pl.DataFrame:
        return self.data.monitoring()

    def show(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        empty = frame.is_empty()
        self.query_one("#monitoring-empty", Empty).update(NO_RESULTS if empty else "")
        self.query_one("#monitoring-body").display = not empty
        if not empty:
            self._draw()

    def action_next_model(self) -> None:
        self.model_index += 1
        if not self.frame.is_empty():
            self._draw()

    def _draw(self) -> None:
        models = sorted(self.frame["model"].unique().to_list())
        model = models[self.model_index % len(models)]
        frame = self.frame.filter(pl.col("model") == model)
        windows = sorted(frame["window_start"].unique().to_list())
        versions = sorted(v for v in frame["version"].unique().to_list() if v is not None)
        self.query_one("#monitoring-model", Static).update(
            f"{model}: {len(windows)} windows, {when(windows[0])} … {when(windows[-1])}, "
            f"version{'s' if len(versions) > 1 else ''} {', '.join(f'v{v}' for v in versions)}"
            + (f"   (m: next of {len(models)} models)" if len(models) > 1 else "")
        )
        drift = of_check(frame, "drift").filter(~pl.col("method").str.contains("rate"))
        self._heat(drift, windows[-HEAT_WINDOWS:])
        width = max(20, min(100, self.size.width - 12))
        judged_drift = drift.filter(pl.col("threshold").is_not_null())  # statistics, not a value's mean in minutes
        self.query_one("#drift-chart", Static).update(
            "\n".join(
                ["Largest drift per window", *column_chart(per_window(judged_drift, pl.col("value").max()), width, 4)]
            )
        )
        charts = []
        performance = of_check(frame, "performance")
        overall = performance.filter(pl.col("feature") == "*")
        # the metric that judges the model is the one with a threshold: AUC, or the task's (macro F1, RMSE, …)
        judged = overall.filter(pl.col("threshold").is_not_null())["method"]
        metric = judged[0] if judged.len() else "auc"
        kind = "Error" if metric in LOWER_IS_BETTER else "Accuracy"
        for title, rows in (
            (f"{kind} ({metric_label(metric)}, with labels)", overall),
            (f"Estimated {kind.lower()} (without labels)", of_check(frame, "estimated")),
        ):
            series = per_window(rows.filter(pl.col("method") == metric), pl.col("value").mean())
            charts += [title, *(column_chart(series, width, 4) if series else ["  (none)"])]
        self.query_one("#accuracy-chart", Static).update("\n".join(charts + disagreement_notes(frame)))
        segments = performance.filter(pl.col("feature").str.contains("="))  # 'COLUMN=VALUE' rows
        self._table(
            "segments",
            segments.filter(pl.col("window_start") == segments["window_start"].max()),
            ("SEGMENT", "METHOD", "VALUE", "THRESHOLD", "ROWS", "ALERT"),
        )
        self._table(
            "quality",
            of_check(frame, "quality").filter(pl.col("alert")).sort("window_start", descending=True).head(50),
            ("WINDOW", "VERSION", "FEATURE", "METHOD", "VALUE", "THRESHOLD", "ROWS"),
        )

    def _heat(self, drift: pl.DataFrame, windows: list) -> None:
        table = self.query_one("#drift-heat", DataTable)
        table.clear(columns=True)
        table.add_columns("FEATURE", "METHOD", "VERSION", *(when(w)[5:] for w in windows))
        # a version's rows are its own line: on the day a new version took over, both judged the day's traffic
        cells = {(r["feature"], r["method"], r["version"], r["window_start"]): r for r in drift.iter_rows(named=True)}
        for feature, method, version in sorted({key[:3] for key in cells}, key=lambda k: (k[0], k[1], k[2] or 0)):
            row = [cells.get((feature, method, version, w)) for w in windows]
            table.add_row(
                feature,
                method,
                "-" if version is None else f"v{version}",
                *(heat(r["value"], r["threshold"], r["alert"]) if r else heat(None, None) for r in row),
            )

    def _table(self, name: str, rows: pl.DataFrame, header: tuple[str, ...]) -> None:
        table = self.query_one(f"#{name}", DataTable)
        table.clear(columns=True)
        table.add_columns(*header)
        for r in rows.iter_rows(named=True):
            value = "-" if r["value"] is None else f"{r['value']:.4f}"
            threshold = "-" if r["threshold"] is None else f"{r['threshold']:.4f}"
            if name == "segments":
                table.add_row(
                    r["feature"], r["method"], value, threshold, str(r["rows"]), "ALERT" if r["alert"] else ""
                )
            else:
                table.add_row(
                    when(r["window_start"]),
                    f"v{r['version']}",
                    r["feature"],
                    r["method"],
                    value,
                    threshold,
                    str(r["rows"]),
                )
        if not rows.height:
            table.add_row("(none)", *[""] * (len(header) - 1))

"""Monitoring: one model's monitoring story (``appliance.monitoring.story``) as the operator reads it — the
served version's data windows × features as a drift table, each statistic against its own threshold; dated
charts of drift, performance with its estimate's band, traffic and latency; a feature's reference-vs-current
distribution; segments and data-quality findings. The tab draws the story and computes none of it."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import polars as pl
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from appliance.monitoring.story import SCORE_DRAWN_UP_TO
from appliance.task import metric_label
from tui.charts import DatedChart, Line, heat, paired_bars, window_dates
from tui.data_dir import ModelMonitoring
from tui.overview import when
from tui.view import Empty, View

NO_RESULTS = "no monitoring results yet — run `appliance replay`"
NO_DISTRIBUTION = "no distribution recorded for this window yet (the next monitor run records it)"
DRIFT_LINES = 6  # features drawn in the drift chart, those with the highest scores: more hide each other
ALL_FEATURES = "(all features)"  # how the results' '*' reads: a multivariate statistic, reconstruction error
DRIFT_CEILING = SCORE_DRAWN_UP_TO  # one far past its threshold would flatten the others
FEATURE_COLORS = ("cyan+", "green+", "magenta+", "white", "blue+", "orange+")  # red is the threshold's
LABEL_COLUMNS = 2  # the drift table's FEATURE and METHOD
CELL_PADDING = 2  # a DataTable pads each cell by one on either side


class Monitoring(View):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "next_model", "Next model"),
        Binding("f", "next_feature", "Next feature"),
    ]
    DEFAULT_CSS = """
    Monitoring .title { text-style: bold; padding-top: 1; }
    Monitoring DataTable { height: auto; max-height: 14; }
    Monitoring #drift-table { max-height: 24; }
    Monitoring #monitoring-body { scrollbar-gutter: stable; }
    """

    def compose(self) -> ComposeResult:
        yield Empty("", id="monitoring-empty")
        with VerticalScroll(id="monitoring-body"):
            yield Static("", id="monitoring-model", classes="title")
            yield Static(
                "Drift by data window: each statistic's value, coloured by its score against its own threshold "
                "(green below 0.5, amber to 1, red at 1: alarm). Enter: its distribution",
                classes="title",
            )
            yield DataTable(id="drift-table", cursor_type="row")
            yield Static("", id="distribution-title", classes="title")
            yield Empty("", id="distribution-empty")
            yield Static("", id="distribution", markup=False)
            yield DatedChart(id="drift-chart")
            yield DatedChart(id="performance-chart")
            yield DatedChart(id="traffic-chart")
            yield DatedChart(id="latency-chart")
            yield Static("Segments (latest labelled window)", classes="title")
            yield DataTable(id="segments", cursor_type="none")
            yield Static("Data-quality findings", classes="title")
            yield DataTable(id="quality", cursor_type="none")

    def on_mount(self) -> None:
        self.model_index = 0
        self.feature: str | None = None
        self.shown: ModelMonitoring | None = None
        self.table_width = 0
        super().on_mount()

    def gather(self) -> tuple[list[str], ModelMonitoring | None]:
        models = self.data.models()
        if not models:
            return models, None
        return models, self.data.monitoring(models[self.model_index % len(models)])

    def show(self, found: tuple[list[str], ModelMonitoring | None]) -> None:
        models, shown = found
        self.shown = shown if shown is not None and shown.story.windows else None
        others = f"   (m: next of {len(models)} models)" if len(models) > 1 else ""
        empty = "" if self.shown else f"{shown.story.model}: {NO_RESULTS}{others}" if shown else NO_RESULTS
        self.query_one("#monitoring-empty", Empty).update(empty)
        self.query_one("#monitoring-body").display = self.shown is not None
        if self.shown is not None:
            self._draw(self.shown, others)

    def action_next_model(self) -> None:
        self.model_index += 1
        self.feature = None
        self.reload()

    def action_next_feature(self) -> None:
        if self.shown is None or not self.shown.distributions:
            return
        features = [d.feature for d in self.shown.distributions]
        at = features.index(self.feature) + 1 if self.feature in features else 0
        self._distribution(self.shown, features[at % len(features)])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "drift-table" and self.shown is not None and event.row_key.value:
            self._distribution(self.shown, event.row_key.value.split("\t")[0])

    def on_resize(self) -> None:
        if self.shown is not None and self.size.width != self.table_width:
            self._drift_table(self.shown)  # as many windows as the new width fits
            self._distribution(self.shown, self.feature)  # bars as long as it allows

    def _draw(self, shown: ModelMonitoring, others: str) -> None:
        story = shown.story
        dates = window_dates(story.windows)
        versions = ", ".join(f"v{v}" for v in story.versions)
        served = (
            f"serving v{story.served_version}"
            if shown.serving
            else f"no version serves: v{story.served_version}, the newest with results"
        )
        # after a promotion the story runs on: each window told by the version that served it
        told = ", ".join(f"v{v} {window_dates([a])[0]} … {window_dates([b])[0]}" for v, a, b in story.eras)
        self.query_one("#monitoring-model", Static).update(
            f"{story.model}: {served} (results for {versions}); {len(dates)} data windows, {dates[0]} … {dates[-1]}"
            + (f"; each told by the version that served it: {told}" if len(story.eras) > 1 else "")
            + others
        )
        self._drift_table(shown)
        self._distribution(shown, self.feature)
        self._charts(shown)
        self._table(
            "segments",
            shown.segments.select("feature", "method", "value", "threshold", "rows", "alert"),
            ("SEGMENT", "METHOD", "VALUE", "THRESHOLD", "ROWS", "ALERT"),
        )
        findings = story.quality.filter(pl.col("alert")).sort("window_start", descending=True).head(50)
        self._table(
            "quality",
            findings.select("window_start", "feature", "method", "value", "threshold", "rows"),
            ("WINDOW", "FEATURE", "METHOD", "VALUE", "THRESHOLD", "ROWS"),
        )

    def _drift_table(self, shown: ModelMonitoring) -> None:
        """Rows: each feature's statistics, the prediction's last; columns: the newest windows the width fits."""
        story = shown.story
        self.table_width = self.size.width
        table = self.query_one("#drift-table", DataTable)
        table.clear(columns=True)
        statistics = story.drift.group_by("feature", "method").agg(pl.col("score").is_not_null().any().alias("judged"))
        keys = sorted(
            (r["feature"], r["method"]) for r in statistics.filter("judged").iter_rows(named=True)
        )  # a value without a threshold (a mean, in minutes) is no statistic to colour
        keys.sort(key=lambda k: (k[0] == "*", k[0] == "prediction"))  # the features, then all of them, the output
        names = (
            max([len(_named(f)) for f, _ in keys] + [len("FEATURE")]),
            max([len(m) for _, m in keys] + [len("METHOD")]),
        )
        dates = window_dates(story.windows)
        column = max(len(dates[0]), len("0.000")) + CELL_PADDING
        room = self.size.width - 2 - sum(names) - LABEL_COLUMNS * CELL_PADDING  # the scrollbar's gutter
        shown_windows = story.windows[-max(1, room // column) :]
        table.add_columns("FEATURE", "METHOD", *dates[-len(shown_windows) :])
        cells = {
            (r["feature"], r["method"], r["window_start"]): r
            for r in story.drift.filter(pl.col("window_start").is_in(shown_windows)).iter_rows(named=True)
        }
        for feature, method in keys:
            row = [cells.get((feature, method, w)) for w in shown_windows]
            table.add_row(
                _named(feature),
                method,
                *(heat(r["value"], r["score"]) if r else heat(None, None) for r in row),
                key=f"{feature}\t{method}",
            )

    def _distribution(self, shown: ModelMonitoring, feature: str | None) -> None:
        """The feature's reference and current shares in the newest window with distributions recorded."""
        found = {d.feature: d for d in shown.distributions}
        chart = self.query_one("#distribution", Static)
        title = self.query_one("#distribution-title", Static)
        self.feature = next(iter(found), None) if feature is None else feature  # at first, the first feature
        d = found.get(self.feature) if self.feature else None
        chart.display = d is not None
        if d is None:
            title.update(f"Reference vs current: {self.feature}" if self.feature else "Reference vs current")
            self.query_one("#distribution-empty", Empty).update(NO_DISTRIBUTION)
            return
        self.query_one("#distribution-empty", Empty).update("")
        title.update(
            f"Reference vs current: {d.feature} (f: next feature), window {when(d.window_start)} UTC, "
            f"{d.current_rows:,} rows against the reference's {d.reference_rows:,}"
        )
        chart.update(paired_bars(d.labels, {"reference": d.reference, "current": d.current}, self.size.width - 2))

    def _charts(self, shown: ModelMonitoring) -> None:
        story = shown.story
        windows: list[datetime] = story.windows
        worst = (  # a feature's line: its worst statistic against its threshold, per window
            story.drift.filter(pl.col("score").is_not_null())
            .group_by("feature", "window_start")
            .agg(pl.col("score").max().clip(upper_bound=DRIFT_CEILING))
        )
        ranked = worst.group_by("feature").agg(pl.col("score").max()).sort("score", "feature", descending=[True, False])
        drawn = ranked["feature"].head(DRIFT_LINES).to_list()
        lines = [
            Line(_named(feature), _per_window(worst.filter(feature=feature), windows, "score"), color)
            for feature, color in zip(drawn, FEATURE_COLORS)
        ]
        self.query_one("#drift-chart", DatedChart).draw(
            f"Drift score per feature: value / its threshold, drawn up to {DRIFT_CEILING:g} "
            f"({len(drawn)} of {ranked.height} features, the highest)",
            windows,
            [*lines, Line("threshold", [1.0] * len(windows), "red", dashed=True)],
        )
        p = story.performance
        self.query_one("#performance-chart", DatedChart).draw(
            f"{metric_label(story.metric)}: realized (labels) vs estimated with its band "
            f"({'lower' if story.lower_is_better else 'higher'} is better)",
            windows,
            [  # drawn in this order, each over the one before: the values on top
                Line("band lower", _per_window(p, windows, "lower"), "gray"),
                Line("band upper", _per_window(p, windows, "upper"), "gray"),
                Line("threshold", _per_window(p, windows, "threshold"), "red", dashed=True),
                Line("estimated", _per_window(p, windows, "estimated"), "orange+"),
                Line("realized", _per_window(p, windows, "realized"), "blue+"),
            ],
        )
        t = story.traffic
        self.query_one("#traffic-chart", DatedChart).draw(
            "Traffic: requests per window", windows, [Line("requests", _per_window(t, windows, "requests"), "cyan")]
        )
        self.query_one("#latency-chart", DatedChart).draw(
            "Latency (ms)",
            windows,
            [
                Line("p50", _per_window(t, windows, "latency_p50_ms"), "green"),
                Line("p99", _per_window(t, windows, "latency_p99_ms"), "magenta"),
            ],
        )

    def _table(self, name: str, rows: pl.DataFrame, header: tuple[str, ...]) -> None:
        table = self.query_one(f"#{name}", DataTable)
        table.clear(columns=True)
        table.add_columns(*header)
        for r in rows.iter_rows():
            table.add_row(*(_cell(value) for value in r))
        if not rows.height:
            table.add_row("(none)", *[""] * (len(header) - 1))


def _named(feature: str) -> str:
    return ALL_FEATURES if feature == "*" else feature


def _per_window(frame: pl.DataFrame, windows: list[datetime], column: str) -> list[float | None]:
    """A story frame's column as one value per window (None where the window has none)."""
    found = dict(zip(frame["window_start"].to_list(), frame[column].to_list()))
    return [found.get(w) for w in windows]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ALERT" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return when(value)
    return str(value)

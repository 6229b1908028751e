"""Overview: each model's production and candidate, deployment, live traffic, alerts, monitoring runs; with
room for them, traffic over time and the recent events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import polars as pl
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from tui.charts import DatedChart, Line
from tui.data_dir import Event, ModelHealth
from tui.view import Empty, View

# The table's columns, and the narrower set below WIDE_COLUMNS (the monitor job's runs are on the Jobs tab).
COLUMNS = ("MODEL", "PROD", "CAND", "DEPLOYMENT", "REQ/S", "P50ms", "P99ms", "ERRORS", "ALERTS", "LAST MON", "NEXT MON")
NARROW_COLUMNS = COLUMNS[:-2]
WIDE_COLUMNS = 120  # the width all columns need, with a two-digit canary split and full dates
HISTORY_HEIGHT = 30  # the tab's height below which the traffic charts and events would not be readable


def when(moment: Any) -> str:
    """A time from any module (unix seconds or datetime) as 'YYYY-MM-DD HH:MM' UTC."""
    if moment is None:
        return "-"
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, UTC)
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return str(moment)


def version(v: int | None) -> str:
    return f"v{v}" if v is not None else "-"


def deployment_state(h: ModelHealth, narrow: bool = False) -> str:
    """The running deployment in a few words; ``narrow``: without the baseline's share of traffic."""
    d = h.deployment
    if d is None:
        return "none"
    if d.strategy == "blue-green":
        return f"blue-green v{d.candidate_version}: " + ("switched" if d.switched else "standby")
    if d.strategy == "shadow":
        return f"shadow v{d.candidate_version}: 0 % served"
    baseline = "" if narrow else f" / {100 - d.traffic_percent:g} %"
    return f"{d.strategy} v{d.candidate_version}: {d.traffic_percent:g} %{baseline}"


class History(NamedTuple):
    """What the overview shows with room for it."""

    traffic: dict[str, pl.DataFrame]  # each served model's traffic per data window (the monitoring story's)
    events: list[Event]  # newest first


class Overview(View):
    live = True
    DEFAULT_CSS = """
    Overview #overview-table { height: auto; max-height: 60%; }
    Overview #overview-history { height: 1fr; }
    Overview #overview-charts { width: 1fr; }
    Overview #overview-charts DatedChart { height: 1fr; }
    Overview #overview-events { width: 1fr; height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield DataTable(id="overview-table", cursor_type="row", zebra_stripes=True)
        yield Empty("", id="overview-note")
        with Horizontal(id="overview-history"):
            with Vertical(id="overview-charts"):
                yield DatedChart(id="overview-requests")
                yield DatedChart(id="overview-latency")
            yield DataTable(id="overview-events", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.columns: tuple[str, ...] = ()
        self.found: tuple[list[ModelHealth], History | None] | None = None
        self.query_one("#overview-events", DataTable).add_columns("WHEN", "MODEL", "EVENT")
        self._fit(self.size.width, self.size.height)
        super().on_mount()

    def on_resize(self, event: events.Resize) -> None:
        if not self._fit(event.size.width, event.size.height) or self.found is None:
            return
        self.show(self.found)  # the rows at once in the new columns
        if self.found[1] is None and self.query_one("#overview-history").display:
            self.reload()  # the history was not gathered while there was no room for it

    def _fit(self, width: int, height: int) -> bool:
        """Columns and panes for this size; True when they changed. History is gathered only while shown."""
        history = self.query_one("#overview-history")
        shown = height >= HISTORY_HEIGHT
        columns = COLUMNS if width >= WIDE_COLUMNS else NARROW_COLUMNS
        if columns == self.columns and history.display == shown:
            return False
        history.display = shown
        self.columns = columns
        table = self.query_one("#overview-table", DataTable)
        table.clear(columns=True)
        table.add_columns(*columns)
        return True

    def gather(self) -> tuple[list[ModelHealth], History | None]:
        if not self.query_one("#overview-history").display:
            return self.data.overview(), None
        return self.data.overview(), History(self.data.traffic_history(), self.data.events())

    def show(self, found: tuple[list[ModelHealth], History | None]) -> None:
        self.found = found
        rows, history = found
        # the columns for the size it has now: a Resize handled before the first rows came (or one that came
        # before layout finished) must not leave the narrow set on a wide screen
        if self.size.width and self._fit(self.size.width, self.size.height) and history is None:
            if self.query_one("#overview-history").display:
                self.call_after_refresh(self.reload)  # the history was not gathered while there was no room
        table = self.query_one("#overview-table", DataTable)
        table.clear()
        narrow = len(self.columns) < len(COLUMNS)
        notes = []
        for h in rows:
            t = h.traffic
            monitor = h.monitoring
            last = monitor.last.started_at if monitor and monitor.last else None
            cells = [
                h.model,
                version(h.production),
                version(h.candidate),
                deployment_state(h, narrow),
                f"{t.per_second:.1f}",
                _ms(t.p50_ms),
                _ms(t.p99_ms),
                "-" if t.error_rate is None else f"{t.error_rate:.1%}",
                str(h.open_alerts),
                when(last),
                when(monitor.next_run if monitor else None),
            ]
            table.add_row(*cells[: len(self.columns)], key=h.model)
        if not rows:
            notes.append("no models yet — run `appliance init` or `appliance up`")
        elif all(h.traffic.requests == 0 for h in rows):
            notes.append("no predictions in the last minute — send some, or run `appliance replay`")
        if rows and all(h.monitoring is None or h.monitoring.next_run is None for h in rows):
            notes.append(
                "monitoring is not scheduled: set [monitoring] schedule in the spec, or run "
                "`appliance jobs run monitor`"
            )
        self.query_one("#overview-note", Empty).update("\n".join(notes))
        if history is not None:
            self._history(history)

    def _history(self, history: History) -> None:
        """Requests and p99 latency per data window of each served model, and the newest events."""
        traffic = history.traffic
        windows = sorted({w for frame in traffic.values() for w in frame["window_start"].to_list()})
        waiting = "" if windows else " (none yet: the monitor job records it per data window)"
        for chart, column, title in (
            ("#overview-requests", "requests", "Requests per window"),
            ("#overview-latency", "latency_p99_ms", "p99 latency per window (ms)"),
        ):
            lines = []
            for model, frame in traffic.items():
                value = dict(zip(frame["window_start"].to_list(), frame[column].to_list()))
                lines.append(Line(model, [value.get(w) for w in windows]))
            self.query_one(chart, DatedChart).draw(title + waiting, windows, lines)
        table = self.query_one("#overview-events", DataTable)
        table.clear()
        room = max(20, table.size.width - 30)  # the event's text in what the time and model leave
        for e in history.events:
            table.add_row(when(e.at), e.model, e.text if len(e.text) <= room else e.text[: room - 1] + "…")
        if not history.events:
            table.add_row("-", "-", "no deployments, alerts or runs yet")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"

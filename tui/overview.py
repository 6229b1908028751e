"""Overview: each model's production and candidate, deployment, live traffic, alerts, monitoring runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from textual.app import ComposeResult
from textual.widgets import DataTable

from tui.data_dir import ModelHealth
from tui.view import Empty, View


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


def deployment_state(h: ModelHealth) -> str:
    d = h.deployment
    if d is None:
        return "none"
    if d.strategy == "blue-green":
        return f"blue-green v{d.candidate_version}: " + ("switched" if d.switched else "standby")
    if d.strategy == "shadow":
        return f"shadow v{d.candidate_version}: 0 % served"
    return f"{d.strategy} v{d.candidate_version}: {d.traffic_percent:g} % / {100 - d.traffic_percent:g} %"


class Overview(View):
    live = True
    DEFAULT_CSS = "Overview DataTable { height: auto; max-height: 60%; }"

    def compose(self) -> ComposeResult:
        yield DataTable(id="overview-table", cursor_type="row", zebra_stripes=True)
        yield Empty("", id="overview-note")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(
            "MODEL", "PROD", "CAND", "DEPLOYMENT", "REQ/S", "P50ms", "P99ms", "ERRORS", "ALERTS", "LAST MON", "NEXT MON"
        )
        super().on_mount()

    def gather(self) -> list[ModelHealth]:
        return self.data.overview()

    def show(self, rows: list[ModelHealth]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        notes = []
        for h in rows:
            t = h.traffic
            monitor = h.monitoring
            last = monitor.last.started_at if monitor and monitor.last else None
            table.add_row(
                h.model,
                version(h.production),
                version(h.candidate),
                deployment_state(h),
                f"{t.per_second:.1f}",
                _ms(t.p50_ms),
                _ms(t.p99_ms),
                "-" if t.error_rate is None else f"{t.error_rate:.1%}",
                str(h.open_alerts),
                when(last),
                when(monitor.next_run if monitor else None),
                key=h.model,
            )
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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"

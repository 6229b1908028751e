"""Alerts: open and past alerts; acknowledge, resolve, see the details."""

from __future__ import annotations

from typing import ClassVar

import msgspec
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from appliance.alerts.records import Alert
from tui.fit import Column, FittingView, short_when
from tui.overview import when
from tui.view import Empty, table_and_detail

COLUMNS = (
    Column("ID"),
    Column("SEVERITY"),
    Column("MODEL", cut=True),
    Column("RULE", cut=True),
    Column("STATUS"),
    Column("FIRST SEEN"),
    Column("MESSAGE", cut=True),  # whole in the detail below
)


class Alerts(FittingView):
    live = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "acknowledge", "Acknowledge"),
        Binding("x", "resolve", "Resolve"),
        Binding("h", "toggle_past", "Open/past"),
    ]
    DEFAULT_CSS = "Alerts DataTable { height: auto; max-height: 60%; } Alerts VerticalScroll { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield from table_and_detail("alerts", "alert-detail")

    def on_mount(self) -> None:
        self.include_resolved = False
        self.alerts: dict[str, Alert] = {}
        super().on_mount()

    def gather(self) -> list[Alert]:
        return self.data.alerts(self.include_resolved)

    def show(self, alerts: list[Alert]) -> None:
        self.found = alerts
        table = self.query_one(DataTable)
        selected = table.cursor_row
        self.alerts = {str(a.id): a for a in alerts}
        self.fill(
            table,
            COLUMNS,
            lambda narrow: [
                (
                    key,
                    [
                        key,
                        a.severity,
                        a.model,
                        a.rule,
                        a.status,
                        short_when(a.first_seen) if narrow else when(a.first_seen),
                        a.message,
                    ],
                )
                for key, a in self.alerts.items()
            ],
        )
        if alerts:  # a reload keeps the cursor where it was
            table.move_cursor(row=min(selected, len(alerts) - 1))
        which = "open or past" if self.include_resolved else "open"
        self.query_one("#alerts-empty", Empty).update(
            "" if alerts else f"no {which} alerts" + ("" if self.include_resolved else " (h: show past ones too)")
        )
        table.display = bool(alerts)
        self._describe()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe()

    def selected(self) -> Alert | None:
        table = self.query_one(DataTable)
        if not self.alerts or table.cursor_row < 0:
            return None
        return self.alerts.get(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    def _describe(self) -> None:
        alert = self.selected()
        detail = (
            "" if alert is None else "\n".join(f"{k}: {_shown(k, v)}" for k, v in msgspec.to_builtins(alert).items())
        )
        self.query_one("#alert-detail", Static).update(detail)

    def action_toggle_past(self) -> None:
        self.include_resolved = not self.include_resolved
        self.reload()

    def action_acknowledge(self) -> None:
        alert = self.selected()
        if alert is not None:
            self.act(lambda: self.data.acknowledge(alert.id), f"alert {alert.id} acknowledged")

    def action_resolve(self) -> None:
        alert = self.selected()
        if alert is not None:
            self.act(lambda: self.data.resolve(alert.id), f"alert {alert.id} resolved")


def _shown(field: str, value: object) -> str:
    """A field of the alert as a person reads it: its times (Unix seconds) as UTC dates, nothing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, int | float) and (field.endswith("_seen") or field.endswith("_at")):
        return when(value)
    return str(value)

"""The dashboard app: seven tabs, a command palette, key bindings in the footer, live refresh."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from appliance.alerts.actions import finish_actions
from appliance.machine.cost import CostSection
from appliance.machine.gpus import GpuProbe
from tui.alerts import Alerts
from tui.data_dir import DataDirectory
from tui.jobs import Jobs
from tui.log_pane import LogFeed, LogPane, logging_into
from tui.machine import Machine
from tui.models import Models
from tui.monitoring import Monitoring
from tui.overview import Overview
from tui.runs import Runs
from tui.view import View

TABS = (
    ("overview", "Overview", Overview),
    ("models", "Models", Models),
    ("monitoring", "Monitoring", Monitoring),
    ("alerts", "Alerts", Alerts),
    ("runs", "Runs", Runs),
    ("machine", "GPU & cost", Machine),
    ("jobs", "Jobs", Jobs),
)
REFRESH_SECONDS = 2.0


class Dashboard(App):
    """The operator's cockpit over one data directory."""

    TITLE = "appliance"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("f5,ctrl+r", "refresh", "Refresh"),
        Binding("l", "toggle_log", "Log"),
        *(Binding(str(i), f"show_tab('{tab}')", label, show=False) for i, (tab, label, _) in enumerate(TABS, 1)),
    ]

    def __init__(
        self,
        root: Path,
        cost: CostSection | None = None,
        gpus: GpuProbe | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        feed: LogFeed | None = None,
        api_url: str | None = None,
        data: DataDirectory | None = None,
    ):
        super().__init__()
        # ``data``: what the tabs read, when not this data directory as it is now (the snapshot tests' fixed data)
        self.data = data or DataDirectory(root, cost, gpus)
        self.refresh_seconds = refresh_seconds
        self.feed = feed or LogFeed()
        # the header says where the API answers (under `appliance up`) and which data directory this is
        self.sub_title = f"API {api_url} · {self.data.root}" if api_url else str(self.data.root)

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for i, (tab, label, view) in enumerate(TABS, 1):
                with TabPane(f"{i} {label}", id=tab):
                    yield view(id=f"{tab}-view")
        yield LogPane(self.feed, id="log-pane")
        yield Footer()

    def on_mount(self) -> None:
        if self.refresh_seconds:
            self.set_interval(self.refresh_seconds, self.refresh_live)

    def on_unmount(self) -> None:
        self.data.close()

    def view(self, tab: str) -> View:
        return self.query_one(f"#{tab}-view", View)

    def active_view(self) -> View:
        return self.view(self.query_one(TabbedContent).active)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.active_view().reload()
        self.call_after_refresh(self._focus_active)

    def _focus_active(self) -> None:
        focusable = [w for w in self.active_view().query("DataTable") if w.display]
        if focusable:
            focusable[0].focus()

    def refresh_live(self) -> None:
        """Reload the visible tab when it shows live figures (traffic, alerts, GPUs)."""
        view = self.active_view()
        if view.live and not self.screen.is_modal:
            view.reload()

    def reload_all(self) -> None:
        """After an action: every tab gathers again."""
        for tab, _, _ in TABS:
            self.view(tab).reload()

    def action_show_tab(self, tab: str) -> None:
        # Let go of the focused table first: a widget that keeps focus inside a hidden pane makes TabbedContent
        # switch back to that pane, so a tab without a table of its own (GPU & cost, an empty Alerts) could not
        # be reached by its key from a tab with one.
        self.set_focus(None)
        self.query_one(TabbedContent).active = tab

    def action_refresh(self) -> None:
        self.active_view().reload()

    def action_toggle_log(self) -> None:
        self.query_one(LogPane).toggle_class("hidden")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab, label, _ in TABS:
            yield SystemCommand(
                f"Show {label}", f"Switch to the {label} tab", lambda tab=tab: self.action_show_tab(tab)
            )
        for action, text in (
            ("promote", "Promote the selected version"),
            ("rollback", "Roll production back"),
            ("deploy('canary')", "Start a canary of the selected version"),
            ("deploy('blue-green')", "Start a blue-green deployment of the selected version"),
            ("deploy('shadow')", "Start a shadow deployment of the selected version"),
            ("advance", "Advance the running deployment"),
            ("abort", "Abort the running deployment"),
        ):
            yield SystemCommand(
                text, "Models tab; asks for confirmation first", lambda action=action: self._on_models(action)
            )

    def _on_models(self, action: str) -> None:
        self.action_show_tab("models")
        self.call_after_refresh(self.view("models").run_action, action)


def run_dashboard(
    root: Path, cost: CostSection | None = None, feed: LogFeed | None = None, api_url: str | None = None
) -> None:
    """Run the dashboard in this terminal until the operator quits; meanwhile every log line of this process
    goes to its log pane (with ``feed``'s lines, e.g. the demo's narrative), never over its screen."""
    feed = feed or LogFeed()
    with logging_into(feed):
        Dashboard(root, cost, feed=feed, api_url=api_url).run()
    # A "run now" of the monitor job may have opened an alert whose retrain runs on this process's threads.
    finish_actions(lambda line: print(line, flush=True))

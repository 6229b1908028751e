"""Jobs: the scheduler's jobs with their last and next run; run one now."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from tui.data_dir import field
from tui.overview import when
from tui.view import Empty, View

ABSENT = "no scheduler in this appliance yet — scheduled jobs appear here once it has one"


class Jobs(View):
    live = True
    BINDINGS = [Binding("n", "run_now", "Run now")]

    def compose(self) -> ComposeResult:
        yield Empty("", id="jobs-empty")
        yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.jobs: list[Any] = []
        self.query_one(DataTable).add_columns("JOB", "MODEL", "SCHEDULE", "LAST RUN", "LAST STATUS", "NEXT RUN")
        super().on_mount()

    def gather(self) -> list[Any] | None:
        return self.data.jobs()

    def show(self, jobs: list[Any] | None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.jobs = jobs or []
        for j in self.jobs:
            table.add_row(str(field(j, "name")), str(field(j, "model") or "-"), str(field(j, "schedule", "") or ""),
                          when(field(j, "last_run")), str(field(j, "last_status", "") or "-"),
                          when(field(j, "next_run")))
        self.query_one("#jobs-empty", Empty).update(ABSENT if jobs is None else "" if jobs else "no scheduled jobs")
        table.display = bool(jobs)

    def action_run_now(self) -> None:
        table = self.query_one(DataTable)
        if not self.jobs or table.cursor_row < 0:
            return
        job = self.jobs[table.cursor_row]
        name, model = field(job, "name"), field(job, "model")
        self.notify(f"running {name} now…", timeout=3)
        self.act(lambda: self.data.run_job(name, model), f"{name} ran")

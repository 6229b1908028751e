"""Jobs: the scheduler's jobs with their last and next run; run one now."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from appliance.scheduler.jobs import JobInfo
from tui.overview import when
from tui.view import Empty, View


class Jobs(View):
    live = True
    BINDINGS: ClassVar[list[BindingType]] = [Binding("n", "run_now", "Run now")]

    def compose(self) -> ComposeResult:
        yield Empty("", id="jobs-empty")
        yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.jobs: list[JobInfo] = []
        self.query_one(DataTable).add_columns("JOB", "MODEL", "SCHEDULE", "LAST RUN", "LAST STATUS", "NEXT RUN")
        super().on_mount()

    def gather(self) -> list[JobInfo]:
        return self.data.jobs()

    def show(self, jobs: list[JobInfo]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.jobs = jobs
        for j in jobs:
            table.add_row(
                j.job,
                j.model,
                j.schedule or "on demand",
                when(j.last.started_at if j.last else None),
                j.last.status if j.last else "-",
                when(j.next_run),
            )
        self.query_one("#jobs-empty", Empty).update("" if jobs else "no jobs — register a model with `appliance init`")
        table.display = bool(jobs)

    def action_run_now(self) -> None:
        table = self.query_one(DataTable)
        if not self.jobs or table.cursor_row < 0:
            return
        job = self.jobs[table.cursor_row]
        self.notify(f"running {job.job} for {job.model} now…", timeout=3)
        self.act(lambda: self.data.run_job(job.job, job.model), job.job + " for " + job.model + ": {result.status}")

"""Runs: tracked experiments, two of them side by side, and training curves."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from appliance.machine.usage import usage_line
from appliance.tracking.queries import RunDetail, RunSummary
from tui.charts import column_chart
from tui.fit import Column, FittingView, short_when
from tui.overview import when
from tui.view import Empty, table_and_detail

# The kind is the detail's first line: the first to go where the table is narrow
COLUMNS = (
    Column(" "),
    Column("RUN"),
    Column("MODEL", cut=True),
    Column("KIND", narrow=False),
    Column("NAME", cut=True),
    Column("STATUS", cut=True),  # a running run's progress, e.g. "iteration 340/1000 · train auc 0.81"
    Column("STARTED"),
    Column("SECONDS"),
)


def short(value: object) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 28 else text[:27] + "…"


def comparison(a: RunDetail, b: RunDetail) -> list[str]:
    """Params and final metrics of two runs side by side; differing params are marked."""
    lines = [f"{'':<30} {a.run.id[:8] + ' ' + a.run.name:<30} {b.run.id[:8] + ' ' + b.run.name:<30}"]
    for title, pick in (("param", lambda d: d.params), ("metric", lambda d: d.metrics)):
        for key in sorted(set(pick(a)) | set(pick(b))):
            left, right = pick(a).get(key, "-"), pick(b).get(key, "-")
            mark = "≠" if left != right else " "
            lines.append(f"{mark}{title + ' ' + key:<29} {short(left):<30} {short(right):<30}")
    return lines


class Runs(FittingView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "mark", "Mark to compare"),
        Binding("enter", "open", "Open", show=False),
    ]
    DEFAULT_CSS = "Runs DataTable { height: auto; max-height: 40%; } Runs VerticalScroll { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield from table_and_detail("runs", "run-detail")

    def on_mount(self) -> None:
        self.marked: list[str] = []
        self.summaries: list[RunSummary] = []
        super().on_mount()

    def gather(self) -> list[RunSummary]:
        return self.data.runs()

    def show(self, runs: list[RunSummary]) -> None:
        was = self.current()
        self.found = self.summaries = runs
        self.live = any(r.status == "running" for r in runs)  # a running run's progress moves: follow it
        table = self.query_one(DataTable)

        def row(r: RunSummary, narrow: bool) -> tuple[str, list[str]]:
            cells = list(r.cells(short_when if narrow else when))
            if r.status == "running" and r.progress:  # how far its training is, e.g. "iteration 340/1000 · …"
                cells[4] = r.progress if narrow else f"running · {r.progress}"  # narrow: progress says running
            return r.id, ["*" if r.id in self.marked else " ", *cells]

        self.fill(table, COLUMNS, lambda narrow: [row(r, narrow) for r in runs])
        self.query_one("#runs-empty", Empty).update("" if runs else "no runs yet — run `appliance train MODEL`")
        table.display = bool(runs)
        ids = [r.id for r in runs]
        if was is not None and was.id in ids:  # a reload keeps the cursor on the run it was on
            table.move_cursor(row=ids.index(was.id))

    def current(self) -> RunSummary | None:
        table = self.query_one(DataTable)
        if not self.summaries or not 0 <= table.cursor_row < len(self.summaries):
            return None
        return self.summaries[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if len(self.marked) < 2:
            self.action_open()

    def action_mark(self) -> None:
        run = self.current()
        if run is None:
            return
        if run.id in self.marked:
            self.marked.remove(run.id)
        else:
            self.marked = (self.marked + [run.id])[-2:]
        self.show(self.summaries)
        if len(self.marked) == 2:
            self._compare(*self.marked)
        else:
            self.action_open()

    def action_open(self) -> None:
        run = self.current()
        if run is not None:
            self._open(run.id)

    def _open(self, run_id: str, other: str | None = None) -> None:
        detail = self.query_one("#run-detail", Static)
        detail.update("loading…")
        # sizes and widgets are read on this thread; before the tab's first layout its own width is still 0
        self._detail(run_id, other, self.size.width or self.app.size.width, detail.update)

    def _compare(self, a: str, b: str) -> None:
        self._open(a, b)

    @work(thread=True, exclusive=True, group="run-detail")
    def _detail(self, run_id: str, other: str | None, width: int, show) -> None:
        def gather() -> str:
            detail = self.data.run(run_id)
            if other is not None:
                return "\n".join(
                    ["Comparing two runs (m on a marked run unmarks it)", *comparison(detail, self.data.run(other))]
                )
            return "\n".join(describe(detail, self.data.curves(detail), width))

        self.in_worker(gather, show)


def describe(d: RunDetail, curves: dict[str, list[float]], width: int) -> list[str]:
    """One run: its params, last metrics and training curves drawn ``width`` columns wide."""
    r = d.run
    lines = [f"run {r.id}  {r.model}  {r.kind} '{r.name}'  {r.outcome}  {r.took()} s  code {r.code_version}"]
    if r.status == "running" and r.progress:
        lines.append(f"progress: {r.progress}")
    if r.error:
        lines.append(f"error: {r.error}")
    if r.status == "skipped":  # a retrain with nothing new to learn from: why, as it said when it ended
        lines.append(f"skipped: {d.tags.get('outcome', 'nothing new to learn from')}")
    usage = usage_line(d.metrics, d.tags)  # GPU utilization, energy and cost, recorded when the run ended
    if usage is not None:
        lines.append(usage)
    lines += [f"  param  {k} = {short(v)}" for k, v in d.params.items()]
    lines += [f"  metric {k} = {short(v)}" for k, v in d.metrics.items()]
    for name, values in curves.items():
        lines += [
            f"training curve: {name} ({len(values)} points)",
            *column_chart(values, max(20, min(100, width - 14)), 4),
        ]
    if not curves:
        lines.append("no training curves (no metric has more than one step)")
    return lines

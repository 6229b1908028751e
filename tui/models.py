"""Models: versions with metrics, gate results and lineage; promote, roll back, deploy, abort."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from appliance.registry.registry import ModelVersion
from appliance.task import confusion_lines, headline, metric_label
from tui.confirm import Confirm
from tui.overview import version, when
from tui.view import Empty, View


def gate_lines(v: ModelVersion) -> list[str]:
    """The version's gate report, one check a line."""
    checks = v.gate_report.get("checks", [])
    if not checks:
        return ["  (no gate report)"]
    return [f"  {'N/A ' if c.get('applicable') is False else 'PASS' if c['passed'] else 'FAIL'}  {c['name']}: "
            f"{c['detail']}" for c in checks]


def metric_lines(v: ModelVersion, production: ModelVersion | None) -> list[str]:
    """Each numeric metric beside production's, with the difference."""
    lines = []
    for name, value in sorted(v.metrics.items()):
        if not isinstance(value, (int, float)) or name.startswith("confusion."):  # shown as a matrix
            continue
        base = production.metrics.get(name) if production else None
        if isinstance(base, (int, float)) and production.version != v.version:
            lines.append(f"  {name:<24} {value:>9.4f}  prod {base:>9.4f}  {value - base:+.4f}")
        else:
            lines.append(f"  {name:<24} {value:>9.4f}")
    return lines or ["  (no metrics)"]


def version_case(v: ModelVersion, production: ModelVersion | None) -> str:
    """Everything a person weighs before moving a version: lineage, metrics against production, gates."""
    lines = [f"{v.model} v{v.version}  {v.status}  created {when(v.created_at)}",
             f"lineage: data snapshot {v.data_version[:12]}  run {v.run_id[:8]}  code {v.code_version[:12]}",
             "metrics" + (f" (against production v{production.version})" if production else ""),
             *metric_lines(v, production)]
    matrix = confusion_lines(v.metrics)
    if matrix:
        lines += ["confusion matrix (rows: true class, columns: predicted)", *(f"  {m}" for m in matrix)]
    lines += ["gate report", *gate_lines(v)]
    return "\n".join(lines)


class Models(View):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "promote", "Promote"),
        Binding("r", "rollback", "Rollback"),
        Binding("b", "deploy('blue-green')", "Blue-green"),
        Binding("c", "deploy('canary')", "Canary"),
        Binding("s", "deploy('shadow')", "Shadow"),
        Binding("v", "advance", "Advance"),
        Binding("a", "abort", "Abort"),
    ]
    DEFAULT_CSS = "Models DataTable { height: 45%; } Models VerticalScroll { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)
        yield Empty("", id="models-empty")
        with VerticalScroll():
            yield Static("", id="version-detail", markup=False)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("MODEL", "VERSION", "STATUS", "ALIAS", "METRIC", "DATA", "RUN",
                                              "REGISTERED")
        self.rows: dict[str, tuple[ModelVersion, int | None, int | None]] = {}
        super().on_mount()

    def gather(self):
        rows = self.data.versions()
        productions = {v.model: v for v, prod, _ in rows if v.version == prod}
        return rows, productions, {m: self.data.deployment(m) for m in productions}

    def show(self, found) -> None:
        rows, self.productions, self.deployments = found
        table = self.query_one(DataTable)
        selected = table.cursor_row
        table.clear()
        self.rows = {}
        for v, prod, cand in rows:
            alias = "production" if v.version == prod else "candidate" if v.version == cand else ""
            metric, value = headline(v.metrics)
            key = f"{v.model}:{v.version}"
            self.rows[key] = (v, prod, cand)
            table.add_row(v.model, version(v.version), v.status, alias,
                          f"{metric_label(metric)} {value:.4f}" if value is not None else "-",
                          v.data_version[:10], v.run_id[:8], when(v.created_at), key=key)
        self.query_one("#models-empty", Empty).update(
            "" if rows else "no model versions yet — run `appliance train MODEL` (or `appliance up`)")
        if rows:
            table.move_cursor(row=min(selected, len(rows) - 1))
            self._describe()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe()

    def _describe(self) -> None:
        picked = self.selected()
        if picked is None:
            return
        v = picked[0]
        text = version_case(v, self.productions.get(v.model))
        d = self.deployments.get(v.model)
        if d is not None:
            text += (f"\ndeployment {d.id}: {d.strategy} v{d.candidate_version} "
                     f"against v{d.baseline_version}, {d.status}")
        self.query_one("#version-detail", Static).update(text)

    def selected(self) -> tuple[ModelVersion, int | None, int | None] | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.rows.get(key)

    def _ask(self, title: str, body: str, confirm: str, action, done: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.act(action, done)
            else:
                self.notify("cancelled; nothing changed", timeout=3)
        self.app.push_screen(Confirm(title, body, confirm), answered)

    def action_promote(self) -> None:
        picked = self.selected()
        if picked is None:
            return
        v, prod, _ = picked
        self._ask(f"Promote {v.model} v{v.version} to production (now {version(prod)})?",
                  version_case(v, self.productions.get(v.model)), "Promote",
                  lambda: self.data.promote(v.model, v.version, reason="promoted from the dashboard"),
                  f"{v.model} v{v.version} is in production")

    def action_rollback(self) -> None:
        picked = self.selected()
        if picked is None:
            return
        model, prod = picked[0].model, picked[1]
        current = self.productions.get(model)
        self._ask(f"Roll {model} back from production {version(prod)} to the version before it?",
                  version_case(current, None) if current else "nothing in production", "Roll back",
                  lambda: self.data.rollback(model, reason="rolled back from the dashboard"),
                  model + " rolled back: v{result.version} is in production")

    def action_deploy(self, strategy: str) -> None:
        picked = self.selected()
        if picked is None:
            return
        v, prod, _ = picked
        self._ask(f"Start a {strategy} deployment of {v.model} v{v.version} against production {version(prod)}?",
                  version_case(v, self.productions.get(v.model)), f"Start {strategy}",
                  lambda: self.data.start_deployment(v.model, strategy, v.version),
                  f"{strategy} deployment of {v.model} v{v.version} started "
                  "({result.traffic_percent:g} % of traffic)")

    def action_advance(self) -> None:
        self._deployment_step("Advance", lambda m: self.data.advance_deployment(m),
                              "deployment {result.id} advanced: {result.status}, {result.traffic_percent:g} %")

    def action_abort(self) -> None:
        self._deployment_step("Abort", lambda m: self.data.abort_deployment(m),
                              "deployment {result.id} {result.status}: all traffic back on the baseline")

    def _deployment_step(self, verb: str, step, done: str) -> None:
        picked = self.selected()
        if picked is None:
            return
        model = picked[0].model
        d = self.deployments.get(model)
        if d is None or d.status != "running":
            self.notify(f"{model} has no deployment running", severity="warning")
            return
        candidate = self.rows.get(f"{model}:{d.candidate_version}")
        body = version_case(candidate[0], self.productions.get(model)) if candidate else ""
        self._ask(f"{verb} the {d.strategy} deployment of {model} v{d.candidate_version} "
                  f"({d.traffic_percent:g} % of traffic)?", body, verb, lambda: step(model), done)

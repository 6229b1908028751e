"""Models: versions with metrics, gate results and lineage, each against production on the same rows; promote,
roll back, deploy, abort."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from appliance.errors import ApplianceError
from appliance.registry.registry import ModelVersion
from appliance.task import confusion_lines, headline, metric_label
from appliance.validation.comparison import Comparison
from storage.errors import StorageError
from tui.confirm import Choose, Confirm
from tui.fit import Column, FittingView, short_when
from tui.overview import version, when
from tui.view import Empty


def _headline(v: ModelVersion) -> str:
    metric, value = headline(v.metrics)
    return f"{metric_label(metric)} {value:.4f}" if value is not None else "-"


def gate_lines(v: ModelVersion) -> list[str]:
    """The version's gate report, one check a line."""
    checks = v.gate_report.get("checks", [])
    if not checks:
        return ["  (no gate report)"]
    return [
        f"  {'N/A ' if c.get('applicable') is False else 'PASS' if c['passed'] else 'FAIL'}  {c['name']}: {c['detail']}"
        for c in checks
    ]


def metric_lines(v: ModelVersion) -> list[str]:
    """Each numeric metric of the version, as its own evaluation measured it."""
    lines = [
        f"  {name:<24} {value:>9.4f}"
        for name, value in sorted(v.metrics.items())
        if isinstance(value, (int, float)) and not name.startswith("confusion.")
    ]  # confusion: a matrix
    return lines or ["  (no metrics)"]


def comparison_lines(v: ModelVersion, production: ModelVersion | None, compared: Comparison | str | None) -> list[str]:
    """The version against production on the same rows (a Comparison, or why there is none yet)."""
    if production is None or production.version == v.version:
        return []
    lines = [f"against production v{production.version}, both scored on the same rows"]
    if isinstance(compared, Comparison):
        lines.append(f"  {compared.line()}")
        if compared.note:
            lines.append(f"  ({compared.note})")
    else:
        lines.append(f"  {compared or 'not compared yet'}")
    return lines


def version_case(v: ModelVersion, production: ModelVersion | None, compared: Comparison | str | None = None) -> str:
    """Everything a person weighs before moving a version: lineage, its metrics, the comparison with production
    on the same rows, gates. Its own metrics are never set against production's: they came from other rows."""
    lines = [
        f"{v.model} v{v.version}  {v.status}  created {when(v.created_at)}",
        f"lineage: data snapshot {v.data_version[:12]}  run {v.run_id[:8]}  code {v.code_version[:12]}",
        *comparison_lines(v, production, compared),
        "metrics on its own evaluation rows",
        *metric_lines(v),
    ]
    matrix = confusion_lines(v.metrics)
    if matrix:
        lines += ["confusion matrix (rows: true class, columns: predicted)", *(f"  {m}" for m in matrix)]
    lines += ["gate report", *gate_lines(v)]
    return "\n".join(lines)


COMPARING = "scoring both on the same rows…"
STRATEGIES = {"b": ("Blue-green", "blue-green"), "c": ("Canary", "canary"), "s": ("Shadow", "shadow")}
STEPS = {"v": ("Advance", "advance"), "a": ("Abort", "abort")}  # of a running deployment
# The data snapshot and the run are the detail's lineage line: the first to go where the table is narrow
COLUMNS = (
    Column("MODEL", cut=True),
    Column("VERSION"),
    Column("STATUS"),
    Column("ALIAS"),
    Column("METRIC"),
    Column("DATA", narrow=False),
    Column("RUN", narrow=False),
    Column("REGISTERED"),
)
Pair = tuple[str, int, int]  # model, version, production version


class Models(FittingView):
    # The footer shows one Deployment key, so that every action fits 80 columns beside the app's keys: it asks
    # which strategy to start, or, with one running, whether to advance or abort it. b, c, s, v and a still
    # act directly, and the command palette lists them.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "promote", "Promote"),
        Binding("r", "rollback", "Rollback"),
        Binding("d", "choose_deployment", "Deployment"),
        *(Binding(key, f"deploy('{strategy}')", label, show=False) for key, (label, strategy) in STRATEGIES.items()),
        Binding("v", "advance", "Advance", show=False),
        Binding("a", "abort", "Abort", show=False),
    ]
    DEFAULT_CSS = "Models DataTable { height: auto; max-height: 45%; } Models VerticalScroll { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)
        yield Empty("", id="models-empty")
        with VerticalScroll():
            yield Static("", id="version-detail", markup=False)

    def on_mount(self) -> None:
        self.rows: dict[str, tuple[ModelVersion, int | None, int | None]] = {}
        # Each version against production on the same rows, computed on a worker when first wanted
        self.comparisons: dict[Pair, Comparison | str] = {}
        self.waiting: dict[Pair, list[Callable[[], None]]] = {}
        super().on_mount()

    def gather(self):
        rows = self.data.versions()
        productions = {v.model: v for v, prod, _ in rows if v.version == prod}
        deployed = {m: self.data.deployment(m) for m in productions}
        return rows, productions, deployed, {m: self.data.rollback_target(m) for m in productions}

    def show(self, found) -> None:
        self.found = found
        rows, self.productions, self.deployments, self.rollback_targets = found
        self.comparisons = {k: c for k, c in self.comparisons.items() if c == COMPARING}  # new labels may have come
        table = self.query_one(DataTable)
        selected = table.cursor_row
        self.rows = {f"{v.model}:{v.version}": (v, prod, cand) for v, prod, cand in rows}

        def cells(narrow: bool) -> list[tuple[str, list[str]]]:
            return [
                (
                    key,
                    [
                        v.model,
                        version(v.version),
                        v.status,
                        "production" if v.version == prod else "candidate" if v.version == cand else "",
                        _headline(v),
                        v.data_version[:10],
                        v.run_id[:8],
                        short_when(v.created_at) if narrow else when(v.created_at),
                    ],
                )
                for key, (v, prod, cand) in self.rows.items()
            ]

        self.fill(table, COLUMNS, cells)
        self.query_one("#models-empty", Empty).update(
            "" if rows else "no model versions yet — run `appliance train MODEL` (or `appliance up`)"
        )
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
        production = self.productions.get(v.model)
        text = version_case(v, production, self._comparison(v, production))
        d = self.deployments.get(v.model)
        if d is not None:
            text += (
                f"\ndeployment {d.id}: {d.strategy} v{d.candidate_version} against v{d.baseline_version}, {d.status}"
            )
        self.query_one("#version-detail", Static).update(text)

    def _comparison(
        self, v: ModelVersion, production: ModelVersion | None, then: Callable[[], None] | None = None
    ) -> Comparison | str | None:
        """The version against production on the same rows; the first time, computed on a worker (``then`` runs
        once it is known, at once if it already is)."""
        if production is None or production.version == v.version:
            if then:
                then()
            return None
        pair = (v.model, v.version, production.version)
        found = self.comparisons.get(pair)
        if found is not None and found != COMPARING:
            if then:
                then()
            return found
        if then:
            self.waiting.setdefault(pair, []).append(then)
        if found is None:
            self.comparisons[pair] = COMPARING
            self._compare(pair)
        return COMPARING

    @work(thread=True, group="compare")
    def _compare(self, pair: Pair) -> None:
        try:
            found: Comparison | str = self.data.comparison(*pair)
        except (ApplianceError, StorageError) as e:
            found = f"not compared — {e}"
        if not self.data.closed:
            self.app.call_from_thread(self._compared, pair, found)

    def _compared(self, pair: Pair, found: Comparison | str) -> None:
        self.comparisons[pair] = found
        self._describe()
        for then in self.waiting.pop(pair, []):
            then()

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
        production = self.productions.get(v.model)

        def ask() -> None:  # with the comparison on the same rows, never the two versions' own metrics
            self._ask(
                f"Promote {v.model} v{v.version} to production (now {version(prod)})?",
                version_case(v, production, self._comparison(v, production)),
                "Promote",
                lambda: self.data.promote(v.model, v.version, reason="promoted from the dashboard"),
                f"{v.model} v{v.version} is in production",
            )

        self._comparison(v, production, then=ask)

    def action_rollback(self) -> None:
        picked = self.selected()
        if picked is None:
            return
        model, prod = picked[0].model, picked[1]
        target = self.rollback_targets.get(model)
        back = self.rows.get(f"{model}:{target}")
        current = self.productions.get(model)
        shown = back[0] if back else current  # the case of the version that will serve
        self._ask(
            f"Roll {model} back? v{target} will serve in place of {version(prod)}."
            if target is not None
            else f"Roll {model} back from {version(prod)}? No version served before it: the registry will refuse.",
            version_case(shown, None) if shown else "nothing in production",
            "Roll back",
            lambda: self.data.rollback(model, reason="rolled back from the dashboard"),
            model + " rolled back: v{result.version} is in production",
        )

    def action_choose_deployment(self) -> None:
        """Which strategy to start; with a deployment running, whether to advance or abort it."""
        picked = self.selected()
        if picked is None:
            return
        v, prod, _ = picked
        d = self.deployments.get(v.model)

        def stepped(step: str | None) -> None:
            if step == "advance":
                self.action_advance()
            elif step == "abort":
                self.action_abort()

        if d is not None and d.status == "running":
            self.app.push_screen(
                Choose(
                    f"The {d.strategy} deployment of {v.model} v{d.candidate_version} serves "
                    f"{d.traffic_percent:g} % of traffic: advance it or abort it?",
                    STEPS,
                ),
                stepped,
            )
            return

        # Said before any choice, as the registry would refuse it after them
        if v.version == prod:
            self.notify(f"{v.model} v{v.version} is production: pick another version to deploy next to it", timeout=5)
            return
        if v.status == "rejected":
            self.notify(f"{v.model} v{v.version} failed its gates and cannot be deployed", timeout=5)
            return

        def chosen(strategy: str | None) -> None:
            if strategy:
                self.action_deploy(strategy)

        self.app.push_screen(
            Choose(f"Deploy {v.model} v{v.version} next to production {version(prod)} how?", STRATEGIES), chosen
        )

    def action_deploy(self, strategy: str) -> None:
        picked = self.selected()
        if picked is None:
            return
        v, prod, _ = picked
        production = self.productions.get(v.model)
        self._ask(
            f"Start a {strategy} deployment of {v.model} v{v.version} against production {version(prod)}?",
            version_case(v, production, self._comparison(v, production)),
            f"Start {strategy}",
            lambda: self.data.start_deployment(v.model, strategy, v.version),
            f"{strategy} deployment of {v.model} v{v.version} started ({{result.traffic_percent:g}} % of traffic)",
        )

    def action_advance(self) -> None:
        self._deployment_step(
            "Advance",
            lambda m: self.data.advance_deployment(m),
            "deployment {result.id} advanced: {result.status}, {result.traffic_percent:g} %",
        )

    def action_abort(self) -> None:
        self._deployment_step(
            "Abort",
            lambda m: self.data.abort_deployment(m),
            "deployment {result.id} {result.status}: all traffic back on the baseline",
        )

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
        production = self.productions.get(model)
        body = version_case(candidate[0], production, self._comparison(candidate[0], production)) if candidate else ""
        self._ask(
            f"{verb} the {d.strategy} deployment of {model} v{d.candidate_version} "
            f"({d.traffic_percent:g} % of traffic)?",
            body,
            verb,
            lambda: step(model),
            done,
        )

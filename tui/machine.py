"""GPU & cost: per-GPU utilization, memory, temperature, power and energy; CPU and memory; what it costs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Sparkline, Static

from appliance.machine.cost import cost_per_1000_predictions
from appliance.machine.disk import DiskUse
from appliance.machine.gpus import GpuReading
from appliance.machine.report import gpu_row, size
from tui.data_dir import MachineCosts
from tui.fit import SCROLLBAR, Column, FittingView

COLUMNS = (
    Column("GPU"),
    Column("NAME", cut=True),
    Column("UTIL"),
    Column("MEMORY"),
    Column("TEMP"),
    Column("POWER"),
    Column("LIMIT"),
    Column("ENERGY"),  # e.g. "5.0 kJ counter": the figure, and where it comes from where there is room
)

NOT_CONFIGURED = (
    "cost: not configured — give `appliance tui --cost FILE` or put a [cost] section in "
    "$APPLIANCE_HOME/appliance.toml "
    "(electricity_per_kwh, hardware_price, amortization_years, host_idle_watts)"
)


def cost_lines(m: MachineCosts) -> list[str]:
    """Cost per hour, per latest training run and per 1,000 predictions, saying what each covers."""
    c, rate = m.cost, m.rate
    if not c.configured:
        return [NOT_CONFIGURED]
    cur = c.currency
    lines = [
        f"cost per hour      {rate.total_per_hour:.4f} {cur}  (electricity {rate.energy_per_hour:.4f} at "
        f"{rate.watts:.0f} W, hardware {rate.hardware_per_hour:.4f})"
    ]
    if m.last_run is None or m.run_cost is None:
        lines.append("per training run   no finished training run yet")
    else:
        r, rc = m.last_run, m.run_cost
        lines.append(
            f"per training run   {rc.total:.4f} {cur}  (run {r.id[:8]}, {r.ended_at - r.started_at:.0f} s: "
            f"hardware {rc.hardware_cost:.4f}, electricity {rc.energy_cost:.4f} over the "
            f"{rc.energy.sampled_seconds:.0f} s the dashboard sampled)"
        )
    per_1000 = cost_per_1000_predictions(m.sampled, m.served) if m.sampled else None
    lines.append(
        "per 1,000 preds    "
        + (
            f"{per_1000:.4f} {cur}  ({m.served} predictions while sampled)"
            if per_1000 is not None
            else "no predictions served while sampled"
        )
    )
    return lines


def _gpu_cells(g: GpuReading, narrow: bool) -> list[str]:
    """The GPU's row; ``narrow``: its energy without where the figure comes from."""
    cells = list(gpu_row(g))
    if narrow and g.energy_source is not None:
        cells[-1] = cells[-1].removesuffix(f" {g.energy_source}")
    return cells


def disk_lines(use: DiskUse | None) -> list[str]:
    """Disk use of the data directory per part (metadata.db, artifacts/, archive/, …) and what is left."""
    if use is None:
        return ["disk: not measured yet"]
    parts = "  ".join(f"{p.name} {size(p.bytes)}" for p in use.parts)
    return [
        f"disk    {size(use.total_bytes)} in the data directory ({size(use.filesystem_free_bytes)} free)",
        f"        {parts}",
    ]


class Machine(FittingView):
    live = True
    DEFAULT_CSS = """
    Machine DataTable { height: auto; max-height: 8; }
    Machine Sparkline { height: 2; margin: 0 1; }
    Machine .title { text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="gpu-status", markup=False)
            yield DataTable(id="gpus", cursor_type="none")
            yield Static("GPU utilization (sampled)", classes="title", id="gpu-spark-title")
            yield Sparkline([], id="gpu-spark")
            yield Static("", id="host", markup=False)
            yield Static("CPU use (sampled)", classes="title")
            yield Sparkline([], id="cpu-spark")
            yield Static("", id="cost", markup=False)
            yield Static("", id="disk", markup=False)

    def gather(self) -> MachineCosts:
        return self.data.machine()

    def show(self, m: MachineCosts) -> None:
        self.found = m
        s = m.snapshot
        available = s.gpu.available
        for widget in ("#gpus", "#gpu-spark", "#gpu-spark-title"):
            self.query_one(widget).display = available
        if available:
            self.query_one("#gpu-status", Static).update(
                f"{len(s.gpu.gpus)} NVIDIA GPU(s), driver {s.gpu.driver_version or '?'}"
            )
            self.fill(  # in the pane, beside its scrollbar
                self.query_one("#gpus", DataTable),
                COLUMNS,
                lambda narrow: [(str(g.index), _gpu_cells(g, narrow)) for g in s.gpu.gpus],
                gutter=SCROLLBAR,
            )
            self.query_one("#gpu-spark", Sparkline).data = [
                sum(g.utilization_percent or 0 for g in h.gpu.gpus) / max(1, len(h.gpu.gpus)) for h in m.history
            ]
        else:
            self.query_one("#gpu-status", Static).update(
                f"no NVIDIA GPU ({s.gpu.no_gpu_reason}) — showing CPU and memory"
            )
        cpu, memory, process = s.cpu, s.memory, s.process
        self.query_one("#host", Static).update(
            f"CPU     {len(cpu.per_core_percent)} cores, {cpu.total_percent:.1f} % busy, load "
            f"{' '.join(f'{x:.2f}' for x in cpu.load_average)}\n"
            f"memory  {size(memory.used_bytes)} used of {size(memory.total_bytes)} "
            f"({100 * memory.used_bytes / max(1, memory.total_bytes):.0f} %)\n"
            f"process RSS {size(process.rss_bytes)}, CPU {process.cpu_percent:.1f} % of one core"
        )
        self.query_one("#cpu-spark", Sparkline).data = [h.cpu.total_percent for h in m.history]
        self.query_one("#cost", Static).update("\n".join(cost_lines(m)))
        self.query_one("#disk", Static).update("\n".join(disk_lines(s.disk)))

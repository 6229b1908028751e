"""A machine snapshot and its cost per hour as lines a person reads (``appliance machine``)."""

from __future__ import annotations

from appliance.machine.cost import CostSection, cost_per_hour
from appliance.machine.gpus import GpuReading
from appliance.machine.snapshot import MachineSnapshot


def machine_report(snapshot: MachineSnapshot, cost: CostSection, home: str) -> list[str]:
    """Host, GPUs, the data directory's disk use per part and the cost per hour."""
    cpu, memory, process = snapshot.cpu, snapshot.memory, snapshot.process
    cores = " ".join(f"{p:.0f}" for p in cpu.per_core_percent)
    lines = [
        f"CPU       {len(cpu.per_core_percent)} cores, {cpu.total_percent:.1f} % busy (per core: {cores}), "
        f"load {' '.join(f'{x:.2f}' for x in cpu.load_average)}",
        f"memory    {size(memory.used_bytes)} used of {size(memory.total_bytes)} "
        f"({100 * memory.used_bytes / memory.total_bytes:.0f} %)",
        f"process   pid {process.pid}: RSS {size(process.rss_bytes)}, CPU {process.cpu_percent:.1f} % of one core",
    ]
    if not snapshot.gpu.available:
        lines.append(f"GPU       no NVIDIA GPU ({snapshot.gpu.no_gpu_reason}); CPU and memory are above")
    else:
        lines.append(f"GPU       {len(snapshot.gpu.gpus)} NVIDIA GPU(s), driver {snapshot.gpu.driver_version or '?'}")
        lines += _table(
            ("GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "LIMIT", "ENERGY"),
            [gpu_row(g) for g in snapshot.gpu.gpus],
        )
    if snapshot.disk is None:
        lines.append(f"disk      data directory {home} does not exist yet (`appliance init` makes it)")
    else:
        disk = snapshot.disk
        lines.append(
            f"disk      {disk.root}: {size(disk.total_bytes)} "
            f"(filesystem: {size(disk.filesystem_free_bytes)} free of {size(disk.filesystem_total_bytes)})"
        )
        lines += _table(("PART", "SIZE"), [(p.name, size(p.bytes)) for p in disk.parts])
    rate = cost_per_hour(snapshot, cost)
    drawn = [f"GPUs {rate.gpu_watts:.0f} W measured"] if snapshot.gpu.available else []
    drawn.append(
        f"host {rate.host_watts:.0f} W estimated from CPU use"
        if cost.busy_watts > 0
        else "host not counted (no power sensor: set cost.host_idle_watts)"
    )
    lines.append(f"power     {rate.watts:.0f} W: {', '.join(drawn)}")
    c = cost.currency
    if not cost.configured:
        lines.append(
            "cost      not configured: add a [cost] section to the data directory's appliance.toml, or "
            "give --cost FILE (electricity_per_kwh, hardware_price, amortization_years, host_idle_watts, "
            "host_busy_watts)"
        )
    else:
        lines.append(
            f"cost      {rate.total_per_hour:.4f} {c}/h: electricity {rate.energy_per_hour:.4f} {c}/h "
            f"at {cost.electricity_per_kwh:g} {c}/kWh, hardware {rate.hardware_per_hour:.4f} {c}/h "
            f"({cost.hardware_price:g} {c} over {cost.amortization_years:g} years)"
        )
    return lines


def size(n: int | float) -> str:
    """Bytes in decimal units, as disks and memory modules are sold."""
    if abs(n) < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"


def gpu_row(g: GpuReading) -> tuple[str, ...]:
    """One GPU's line, as ``appliance machine`` and the dashboard show it: index, name, utilization, memory,
    temperature, power, power limit, energy (and where the energy figure comes from)."""
    memory = (
        f"{size(g.memory_used_bytes)} / {size(g.memory_total_bytes)}"
        if g.memory_used_bytes is not None and g.memory_total_bytes is not None
        else "n/a"
    )
    energy = f"{g.energy_mj / 1e6:.1f} kJ {g.energy_source}" if g.energy_mj is not None else "n/a"
    return (
        str(g.index),
        g.name,
        _number(g.utilization_percent, "%"),
        memory,
        _number(g.temperature_c, "°C"),
        _number(g.power_w, "W"),
        _number(g.power_limit_w, "W"),
        energy,
    )


def _number(value: float | None, unit: str) -> str:
    return f"{value:.0f} {unit}" if value is not None else "n/a"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(x) for x in column) for column in zip(header, *rows)]
    return [" " * 10 + "  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in (header, *rows)]

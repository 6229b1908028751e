"""Energy used between two instants, from a series of machine snapshots.

GPU energy comes from each GPU's cumulative energy (the driver's counter, or power integrated by
the probe); the rest of the host has no power sensor psutil can read, so its power is estimated
from CPU use between a configured idle and busy wattage and integrated the same way.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import msgspec

from appliance.machine.gpus import EnergySource
from appliance.machine.snapshot import MachineSnapshot

JOULES_PER_KWH = 3.6e6


class GpuEnergy(msgspec.Struct, frozen=True):
    uuid: str
    name: str
    joules: float
    source: EnergySource  # "counter": measured by the driver; "integrated": power × time


class EnergyUse(msgspec.Struct, frozen=True):
    start: float
    end: float
    sampled_seconds: float  # the part of start..end that snapshots cover; energy is for that part
    gpus: list[GpuEnergy]
    gpu_joules: float
    host_joules: float  # estimated from CPU use (0 when no host wattage is configured)
    kwh: float  # GPUs and host together


def host_watts(cpu_percent: float, idle_watts: float, busy_watts: float) -> float:
    """Host power besides its GPUs, linear in CPU use between idle and fully busy."""
    return idle_watts + (busy_watts - idle_watts) * cpu_percent / 100


def energy_between(
    snapshots: Sequence[MachineSnapshot], start: float, end: float, idle_watts: float = 0.0, busy_watts: float = 0.0
) -> EnergyUse:
    """Energy from ``start`` to ``end`` (unix seconds), interpolated linearly between snapshots."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    ordered = sorted(snapshots, key=lambda s: s.taken_at)
    host = _integral([(s.taken_at, host_watts(s.cpu.total_percent, idle_watts, busy_watts)) for s in ordered])
    gpus = []
    for uuid, (name, source, readings) in _gpu_series(ordered).items():
        gpus.append(GpuEnergy(uuid, name, _between(_cumulative(readings), start, end) / 1000, source))
    covered = 0.0
    if ordered:
        covered = max(0.0, min(end, ordered[-1].taken_at) - max(start, ordered[0].taken_at))
    gpu_joules = sum((g.joules for g in gpus), 0.0)
    host_joules = _between(host, start, end)
    return EnergyUse(start, end, covered, gpus, gpu_joules, host_joules, (gpu_joules + host_joules) / JOULES_PER_KWH)


def _gpu_series(ordered: Sequence[MachineSnapshot]) -> dict[str, tuple[str, EnergySource, list[tuple[float, float]]]]:
    series: dict[str, tuple[str, EnergySource, list[tuple[float, float]]]] = {}
    for snapshot in ordered:
        for gpu in snapshot.gpu.gpus:
            if gpu.energy_mj is not None and gpu.energy_source is not None:
                series.setdefault(gpu.uuid, (gpu.name, gpu.energy_source, []))[2].append(
                    (snapshot.taken_at, gpu.energy_mj)
                )
    return series


def _cumulative(readings: list[tuple[float, float]]) -> list[tuple[float, float]]:
    # The driver's counter restarts from zero when the driver reloads: a drop adds nothing.
    curve, total = [], 0.0
    for i, (at, value) in enumerate(readings):
        if i:
            total += max(0.0, value - readings[i - 1][1])
        curve.append((at, total))
    return curve


def _integral(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The running trapezoid integral of (time, rate) points, as (time, cumulative) points."""
    curve, total = [], 0.0
    for i, (at, rate) in enumerate(points):
        if i:
            then, then_rate = points[i - 1]
            total += (rate + then_rate) / 2 * (at - then)
        curve.append((at, total))
    return curve


def _between(curve: list[tuple[float, float]], start: float, end: float) -> float:
    return _at(curve, end) - _at(curve, start)


def _at(curve: list[tuple[float, float]], at: float) -> float:
    """A cumulative curve's value at ``at``; flat before its first point and after its last."""
    if not curve:
        return 0.0
    times = [t for t, _ in curve]
    i = bisect_right(times, at)
    if i == 0:
        return curve[0][1]
    if i == len(curve):
        return curve[-1][1]
    (t0, v0), (t1, v1) = curve[i - 1], curve[i]
    return v0 + (v1 - v0) * (at - t0) / (t1 - t0)

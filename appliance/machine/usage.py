"""What one run used of the machine: GPU utilization, memory peak, energy and cost, CPU use and CPU time.

A training run is metered from its start to its end by sampling the whole machine (the sampler's
probe, NVML through ``GpuProbe``), so a figure covers every GPU of the box and whatever else ran on
it meanwhile: NVML reads devices, not processes. The snapshots are summed as they come rather than
kept, so an hours-long run costs no more memory than a short one.
"""

from __future__ import annotations

import os
import threading
from typing import TypeVar

import msgspec
import psutil

from appliance.machine.cost import CostSection, cost_between
from appliance.machine.sampler import MachineSampler
from appliance.machine.snapshot import MachineProbe, MachineSnapshot

Reading = TypeVar("Reading", int, float)
USAGE_INTERVAL_S = 1.0  # NVML's utilization is the busy share of its last sampling period (up to 1 s)


class RunCost(msgspec.Struct, frozen=True):
    electricity: float  # the measured GPU energy and the host's estimate, at the [cost] price per kWh
    hardware: float  # the machine's amortization over the run's duration
    total: float
    currency: str


class RunUsage(msgspec.Struct, frozen=True):
    """One run's use of the machine; a GPU figure is None when there is no GPU (``no_gpu_reason`` says why)
    or NVML could not read it."""

    seconds: float  # from the first snapshot to the last
    cpu_utilization_mean: float  # of all cores together, 0..100, weighted by time
    process_cpu_seconds: float  # user and system time of the metered process and its children
    gpus: list[str]  # the devices' names
    no_gpu_reason: str | None
    gpu_utilization_mean: float | None  # percent, the mean over the GPUs, weighted by time
    gpu_utilization_max: float | None  # percent, the busiest reading of any GPU
    gpu_memory_peak_bytes: int | None  # the most any one GPU had in use
    gpu_energy_joules: float | None
    gpu_energy_source: str | None  # counter (the driver's), integrated (power × time), or both
    host_energy_joules: float | None  # estimated from CPU use; None where [cost] gives no host wattage
    cost: RunCost | None  # None without a [cost] section

    def figures(self) -> tuple[dict[str, float], dict[str, str]]:
        """The run's metrics and tags: what ``appliance runs show`` and the Runs tab show."""
        metrics = {
            "duration_seconds": self.seconds,
            "cpu_utilization_mean": self.cpu_utilization_mean,
            "process_cpu_seconds": self.process_cpu_seconds,
        }
        optional = {
            "gpu_utilization_mean": self.gpu_utilization_mean,
            "gpu_utilization_max": self.gpu_utilization_max,
            "gpu_memory_peak_bytes": self.gpu_memory_peak_bytes,
            "gpu_energy_joules": self.gpu_energy_joules,
            "host_energy_joules": self.host_energy_joules,
        }
        if self.cost is not None:
            optional |= {"cost": self.cost.total, "cost_electricity": self.cost.electricity}
            optional["cost_hardware"] = self.cost.hardware
        metrics |= {k: float(v) for k, v in optional.items() if v is not None}
        tags = {"gpus": ", ".join(self.gpus)} if self.gpus else {"no_gpu": self.no_gpu_reason or "none read"}
        if self.gpu_energy_source is not None:
            tags["gpu_energy_source"] = self.gpu_energy_source
        if self.cost is not None:
            tags["cost_currency"] = self.cost.currency
        return metrics, tags


def usage_line(metrics: dict[str, float], tags: dict[str, str]) -> str | None:
    """A run's use of the machine in one line, from the figures it recorded; None for a run that has none."""
    if "duration_seconds" not in metrics:
        return None
    parts = []
    if "gpus" in tags:
        gpu = f"GPU {tags['gpus']}"
        if "gpu_utilization_mean" in metrics:
            gpu += f" {metrics['gpu_utilization_mean']:.1f} % mean, {metrics.get('gpu_utilization_max', 0):.0f} % max"
        if "gpu_memory_peak_bytes" in metrics:
            gpu += f", memory peak {metrics['gpu_memory_peak_bytes'] / 1e9:.2f} GB"
        if "gpu_energy_joules" in metrics:
            gpu += f", {_energy(metrics['gpu_energy_joules'])} ({tags.get('gpu_energy_source', '?')})"
        parts.append(gpu)
    else:
        parts.append(f"no GPU figures ({tags.get('no_gpu', 'not recorded')})")
    parts.append(
        f"CPU {metrics['cpu_utilization_mean']:.0f} % mean, {metrics.get('process_cpu_seconds', 0):.1f} s of CPU time"
    )
    if "cost" in metrics:
        parts.append(f"cost {metrics['cost']:.4g} {tags.get('cost_currency', '')}".rstrip())
    return f"machine: {'; '.join(parts)} over {metrics['duration_seconds']:.1f} s"


class UsageMeter:
    """Meters the machine from ``start`` to ``stop`` on a background thread: a snapshot at each end and every
    ``interval`` seconds between, summed into a ``RunUsage``."""

    def __init__(self, probe: MachineProbe, cost: CostSection | None = None, interval: float = USAGE_INTERVAL_S):
        self.cost = cost or CostSection()  # the defaults: nothing priced
        self._sampler = MachineSampler(probe, interval, keep=1, on_snapshot=self._add)
        self._process = psutil.Process(os.getpid())
        self._lock = threading.Lock()
        self._first: MachineSnapshot | None = None
        self._last: MachineSnapshot | None = None
        self._cpu_time = 0.0  # cpu percent × seconds
        self._gpu_busy, self._gpu_seconds = 0.0, 0.0  # gpu percent × seconds, and the seconds read
        self._gpu_max: float | None = None
        self._memory_peak: int | None = None
        self._gpu_joules: float | None = None
        self._sources: set[str] = set()
        self._host_joules = self._electricity = self._hardware = 0.0
        self._cpu_seconds_at_start = 0.0
        self._cpu_seconds = 0.0

    def start(self) -> UsageMeter:
        self._cpu_seconds_at_start = self._process_cpu_seconds()
        self._sampler.sample()
        self._sampler.start()
        return self

    def stop(self) -> None:
        """Take the last snapshot and stop sampling (NVML is released)."""
        self._sampler.sample()
        self._sampler.stop()
        self._cpu_seconds = self._process_cpu_seconds() - self._cpu_seconds_at_start

    def __enter__(self) -> UsageMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def usage(self) -> RunUsage:
        """What was used between the first snapshot and the latest."""
        with self._lock:
            first, last = self._first, self._last
            assert first is not None and last is not None, "started: a snapshot at the start"
            seconds = last.taken_at - first.taken_at
            cost = None
            if self.cost.configured:
                total = self._electricity + self._hardware
                cost = RunCost(self._electricity, self._hardware, total, self.cost.currency)
            return RunUsage(
                seconds=seconds,
                cpu_utilization_mean=self._cpu_time / seconds if seconds > 0 else last.cpu.total_percent,
                process_cpu_seconds=self._cpu_seconds,
                gpus=[g.name for g in last.gpu.gpus],
                no_gpu_reason=last.gpu.no_gpu_reason,
                gpu_utilization_mean=self._gpu_busy / self._gpu_seconds if self._gpu_seconds > 0 else self._gpu_max,
                gpu_utilization_max=self._gpu_max,
                gpu_memory_peak_bytes=self._memory_peak,
                gpu_energy_joules=self._gpu_joules,
                gpu_energy_source="+".join(sorted(self._sources)) or None,
                host_energy_joules=self._host_joules if self.cost.busy_watts > 0 else None,
                cost=cost,
            )

    def _add(self, snapshot: MachineSnapshot) -> None:
        with self._lock:
            if self._first is None:
                self._first = snapshot
            readings = [g.utilization_percent for g in snapshot.gpu.gpus if g.utilization_percent is not None]
            memory = [g.memory_used_bytes for g in snapshot.gpu.gpus if g.memory_used_bytes is not None]
            self._gpu_max = _peak(self._gpu_max, readings)
            self._memory_peak = _peak(self._memory_peak, memory)
            last, self._last = self._last, snapshot
            if last is None or snapshot.taken_at <= last.taken_at:
                return
            seconds = snapshot.taken_at - last.taken_at  # each reading describes the time since the one before
            self._cpu_time += snapshot.cpu.total_percent * seconds
            if readings:
                self._gpu_busy += sum(readings) / len(readings) * seconds
                self._gpu_seconds += seconds
            part = cost_between([last, snapshot], last.taken_at, snapshot.taken_at, self.cost)
            if part.energy.gpus:
                self._gpu_joules = (self._gpu_joules or 0.0) + part.energy.gpu_joules
                self._sources |= {g.source for g in part.energy.gpus}
            self._host_joules += part.energy.host_joules
            self._electricity += part.energy_cost
            self._hardware += part.hardware_cost

    def _process_cpu_seconds(self) -> float:
        t = self._process.cpu_times()
        return t.user + t.system + t.children_user + t.children_system


def _energy(joules: float) -> str:
    return f"{joules:.0f} J" if joules < 10_000 else f"{joules / 1000:.1f} kJ"


def _peak(so_far: Reading | None, values: list[Reading]) -> Reading | None:
    if so_far is not None:
        values = values + [so_far]
    return max(values) if values else None

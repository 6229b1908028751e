"""One reading of the whole machine: host, GPUs and the data directory's disk use."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from appliance.machine.disk import DiskUse, disk_use
from appliance.machine.gpus import GpuProbe, GpuStatus
from appliance.machine.host import CpuUse, HostProbe, MemoryUse, ProcessUse


class MachineSnapshot(msgspec.Struct, frozen=True):
    taken_at: float  # unix seconds
    cpu: CpuUse  # measured since the probe's previous reading
    memory: MemoryUse
    process: ProcessUse
    gpu: GpuStatus
    disk: DiskUse | None  # None when there is no data directory to measure


class MachineProbe:
    """Reads the host, every GPU and (when given one) the data directory's disk use."""

    def __init__(self, root: Path | None = None, gpus: GpuProbe | None = None, clock: Callable[[], float] = time.time):
        self.root = Path(root) if root is not None else None
        self.gpus = gpus or GpuProbe()
        self._host = HostProbe()
        self._clock = clock

    def read(self, measure_disk: bool = True) -> MachineSnapshot:
        """A snapshot now; disk use is left out (None) unless ``measure_disk``."""
        at = self._clock()
        cpu, memory, process = self._host.read()
        disk = None
        if measure_disk and self.root is not None and self.root.is_dir():
            disk = disk_use(self.root)
        return MachineSnapshot(at, cpu, memory, process, self.gpus.read(at), disk)

    def close(self) -> None:
        self.gpus.close()


def take_snapshot(root: Path | None = None, gpus: GpuProbe | None = None, cpu_seconds: float = 0.5) -> MachineSnapshot:
    """A one-off snapshot, with CPU use measured over ``cpu_seconds``."""
    probe = MachineProbe(root, gpus)
    try:
        time.sleep(cpu_seconds)
        return probe.read()
    finally:
        probe.close()

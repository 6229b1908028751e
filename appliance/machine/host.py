"""The host through psutil: CPU use per core and in all, load average, memory, this process."""

from __future__ import annotations

import os

import msgspec
import psutil


class CpuUse(msgspec.Struct, frozen=True):
    total_percent: float  # of all cores together, 0..100
    per_core_percent: list[float]
    load_average: tuple[float, float, float]  # 1, 5 and 15 minutes, in runnable processes


class MemoryUse(msgspec.Struct, frozen=True):
    used_bytes: int  # total less what is available (page cache counts as available)
    total_bytes: int


class ProcessUse(msgspec.Struct, frozen=True):
    pid: int
    rss_bytes: int
    cpu_percent: float  # of one core, so above 100 when several threads run


class HostProbe:
    """Reads the host; CPU use is measured between this reading and the previous one.

    It keeps its own previous CPU times rather than psutil's module-wide ones, so that two
    probes in one process (the sampler, a one-off CLI reading) do not disturb each other.
    """

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)
        self._last = psutil.cpu_times(percpu=True)

    def read(self) -> tuple[CpuUse, MemoryUse, ProcessUse]:
        """CPU since the last reading (or since the probe was made), memory and process now."""
        now = psutil.cpu_times(percpu=True)
        per_core = [busy_percent(a, b) for a, b in zip(self._last, now)]
        total = busy_percent(_summed(self._last), _summed(now))
        self._last = now
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            process = ProcessUse(self._process.pid, self._process.memory_info().rss, self._process.cpu_percent(None))
        load = tuple(round(x, 2) for x in psutil.getloadavg())
        return (
            CpuUse(total, per_core, load),  # type: ignore[arg-type]
            MemoryUse(memory.total - memory.available, memory.total),
            process,
        )


def busy_percent(before, after) -> float:
    """Share of time not idle between two CPU-times readings, as psutil.cpu_percent counts it."""

    # Guest time is already inside user time on Linux, and iowait is idle waiting.
    def idle(t) -> float:
        return t.idle + getattr(t, "iowait", 0.0)

    def total(t) -> float:
        return sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    elapsed = total(after) - total(before)
    if elapsed <= 0:
        return 0.0
    busy = elapsed - (idle(after) - idle(before))
    return round(min(100.0, max(0.0, 100 * busy / elapsed)), 1)


def _summed(times: list) -> tuple:
    return type(times[0])(*(sum(field) for field in zip(*times)))

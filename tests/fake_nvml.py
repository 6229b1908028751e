"""A fake NVML library: pynvml's functions and exceptions over GPUs described in a dict each.

This machine and CI have no NVIDIA GPU, so tests (and the GPU & cost screen's) pass this in
place of ``pynvml``. A device field holding an exception instance raises it when read.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml

NOT_SUPPORTED = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-aaaa",
    "utilization": 87,
    "memory_used": 10_000_000_000,
    "memory_total": 80_000_000_000,
    "temperature": 54,
    "power_mw": 312_000,
    "power_limit_mw": 700_000,
    "energy_mj": 5_000_000,
}
# An older board: no energy counter (power is integrated instead) and no temperature reading.
T4 = {
    "name": "Tesla T4",
    "uuid": "GPU-bbbb",
    "utilization": 20,
    "memory_used": 1_000_000_000,
    "memory_total": 16_000_000_000,
    "temperature": NOT_SUPPORTED,
    "power_mw": 30_000,
    "power_limit_mw": 70_000,
    "energy_mj": NOT_SUPPORTED,
}


class FakeNvml:
    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, devices: list[dict[str, Any]], init_error: Exception | None = None):
        self.devices = [dict(d) for d in devices]
        self.init_error = init_error
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def _get(self, handle: int, field: str) -> Any:
        value = self.devices[handle][field]
        if isinstance(value, Exception):
            raise value
        return value

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._get(handle, "name")

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._get(handle, "uuid")

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._get(handle, "utilization"), memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        used, total = self._get(handle, "memory_used"), self._get(handle, "memory_total")
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._get(handle, "temperature")

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._get(handle, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return self._get(handle, "power_limit_mw")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return self._get(handle, "energy_mj")

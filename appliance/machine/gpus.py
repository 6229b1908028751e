"""NVIDIA GPUs through NVML: utilization, memory, temperature, power and energy per device.

The NVML library is passed in (the real one is ``pynvml``), so tests substitute a fake with the
same functions and exceptions; this module's own logic, error handling included, is what runs.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import msgspec

EnergySource = Literal["counter", "integrated"]


class GpuReading(msgspec.Struct, frozen=True):
    """One GPU at one instant; a field the device cannot report is None (why: in ``unread``)."""

    index: int
    name: str
    uuid: str
    utilization_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None
    # Cumulative energy in millijoules: the driver's counter since it loaded ("counter"), or power
    # integrated over this probe's readings since it started ("integrated") where the device has
    # no counter. Either way only differences between two readings mean something.
    energy_mj: float | None
    energy_source: EnergySource | None
    unread: dict[str, str] = {}


class GpuStatus(msgspec.Struct, frozen=True):
    """Every NVIDIA GPU of the machine, or why there are none to read."""

    gpus: list[GpuReading]
    no_gpu_reason: str | None = None  # set when NVML has no device to offer, in plain words
    driver_version: str | None = None

    @property
    def available(self) -> bool:
        return self.no_gpu_reason is None


class GpuProbe:
    """Reads every GPU through an NVML library (``pynvml`` by default), initialising it once.

    Keeps, per GPU without an energy counter, the trapezoid integral of its power over the
    readings so far, so that energy between two readings is known on every device.
    """

    def __init__(self, nvml: Any = None):
        if nvml is None:
            import pynvml as nvml
        self._nvml = nvml
        self._lock = threading.Lock()
        self._started = False
        self._no_gpu_reason: str | None = None
        self._driver_version: str | None = None
        self._integrated: dict[str, tuple[float, float, float]] = {}  # uuid -> (at, power W, mJ so far)

    def read(self, at: float) -> GpuStatus:
        """Every GPU's reading at unix time ``at`` (the caller's clock, so integration uses it too)."""
        with self._lock:
            self._start()
            if self._no_gpu_reason is not None:
                return GpuStatus([], no_gpu_reason=self._no_gpu_reason)
            try:
                count = self._nvml.nvmlDeviceGetCount()
            except self._nvml.NVMLError as e:
                return GpuStatus(
                    [], no_gpu_reason=f"NVML could not count devices: {e}", driver_version=self._driver_version
                )
            if count == 0:
                return GpuStatus(
                    [], no_gpu_reason="the NVIDIA driver reports no devices", driver_version=self._driver_version
                )
            return GpuStatus([self._read_device(i, at) for i in range(count)], driver_version=self._driver_version)

    def close(self) -> None:
        """Release NVML (pynvml counts initialisations, so this undoes only ours)."""
        with self._lock:
            if self._started and self._no_gpu_reason is None:
                self._nvml.nvmlShutdown()
            self._started = False

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError_LibraryNotFound:
            self._no_gpu_reason = "the NVIDIA driver library libnvidia-ml is not installed"
            return
        except nvml.NVMLError_DriverNotLoaded:
            self._no_gpu_reason = "the NVIDIA driver is not loaded"
            return
        except nvml.NVMLError as e:
            self._no_gpu_reason = f"NVML failed to start: {e}"
            return
        self._driver_version = _text(self._field(nvml.nvmlSystemGetDriverVersion, {}, "driver_version"))

    def _read_device(self, index: int, at: float) -> GpuReading:
        nvml = self._nvml
        unread: dict[str, str] = {}
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as e:
            return GpuReading(
                index, "?", f"index-{index}", None, None, None, None, None, None, None, None, {"device": str(e)}
            )

        def field(name: str, read, *args):
            return self._field(lambda: read(handle, *args), unread, name)

        uuid = _text(field("uuid", nvml.nvmlDeviceGetUUID)) or f"index-{index}"
        utilization = field("utilization_percent", nvml.nvmlDeviceGetUtilizationRates)
        memory = field("memory", nvml.nvmlDeviceGetMemoryInfo)
        power_mw = field("power_w", nvml.nvmlDeviceGetPowerUsage)
        limit_mw = field("power_limit_w", nvml.nvmlDeviceGetEnforcedPowerLimit)
        power = power_mw / 1000 if power_mw is not None else None
        energy, source = self._energy(
            uuid, at, power, field("energy_counter", nvml.nvmlDeviceGetTotalEnergyConsumption)
        )
        return GpuReading(
            index=index,
            name=_text(field("name", nvml.nvmlDeviceGetName)) or "?",
            uuid=uuid,
            utilization_percent=float(utilization.gpu) if utilization is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            temperature_c=_float(field("temperature_c", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)),
            power_w=power,
            power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
            energy_mj=energy,
            energy_source=source,
            unread=unread,
        )

    def _energy(
        self, uuid: str, at: float, power_w: float | None, counter_mj: int | None
    ) -> tuple[float | None, EnergySource | None]:
        if counter_mj is not None:
            return float(counter_mj), "counter"
        if power_w is None:
            return None, None
        previous = self._integrated.get(uuid)
        if previous is None:
            self._integrated[uuid] = (at, power_w, 0.0)
            return 0.0, "integrated"
        then, then_w, total = previous
        if at > then:  # a second reading at the same instant (or a clock stepping back) adds nothing
            total += (then_w + power_w) / 2 * (at - then) * 1000  # W·s = J; mJ like the counter
            self._integrated[uuid] = (at, power_w, total)
        return total, "integrated"

    def _field(self, read, unread: dict[str, str], name: str):
        # NotSupported is the usual answer (no energy counter on older boards, no temperature on
        # some vGPUs); any other NVML error on one field must not cost the other fields either.
        try:
            return read()
        except self._nvml.NVMLError as e:
            unread[name] = "not supported" if isinstance(e, self._nvml.NVMLError_NotSupported) else str(e)
            return None


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _float(value: float | int | None) -> float | None:
    return float(value) if value is not None else None

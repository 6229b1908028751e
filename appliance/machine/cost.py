"""What running the machine costs: electricity from measured energy, plus the hardware amortized.

Configured in a ``[cost]`` section. With the defaults (all zero) every cost is zero and
``configured`` is False, so a screen can say "not configured" rather than show a made-up price.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import msgspec

from appliance.machine.energy import EnergyUse, energy_between, host_watts
from appliance.machine.snapshot import MachineSnapshot
from appliance.toml_file import FieldError, load_toml

HOURS_PER_YEAR = 365.25 * 24
NotNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]


class CostSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    electricity_per_kwh: NotNegative = 0.0  # price of a kWh, in `currency`
    currency: str = "EUR"
    hardware_price: NotNegative = 0.0  # what the machine cost to buy
    amortization_years: Positive = 3.0  # written off evenly over this many years of owning it
    # The host besides its GPUs (CPU, memory, disks, fans): psutil reads no power, so give the
    # wall power at idle and fully busy; use between them is scaled by CPU use. 0 = not counted.
    host_idle_watts: NotNegative = 0.0
    host_busy_watts: float | None = None  # None: the same as idle

    def __post_init__(self) -> None:
        if self.host_busy_watts is not None and self.host_busy_watts < self.host_idle_watts:
            raise FieldError(
                "host_busy_watts",
                f"{self.host_busy_watts} is below host_idle_watts "
                f"({self.host_idle_watts}); busy draws at least as much as idle",
            )

    @property
    def configured(self) -> bool:
        return self.electricity_per_kwh > 0 or self.hardware_price > 0

    @property
    def busy_watts(self) -> float:
        return self.host_idle_watts if self.host_busy_watts is None else self.host_busy_watts

    @property
    def hardware_per_hour(self) -> float:
        return self.hardware_price / (self.amortization_years * HOURS_PER_YEAR)


class CostRate(msgspec.Struct, frozen=True):
    """What the machine costs per hour at one instant."""

    watts: float  # GPUs measured plus the host estimated
    gpu_watts: float
    host_watts: float
    energy_per_hour: float
    hardware_per_hour: float
    total_per_hour: float
    currency: str
    unmeasured_gpus: list[int] = []  # GPUs whose power NVML could not read (counted as 0 W)


class RangeCost(msgspec.Struct, frozen=True):
    """What the machine cost between two instants, e.g. a training run's start and end."""

    energy: EnergyUse
    energy_cost: float
    hardware_cost: float
    total: float
    currency: str


def cost_per_hour(snapshot: MachineSnapshot, cost: CostSection) -> CostRate:
    """The machine's cost per hour at a snapshot's power draw."""
    gpu_watts = sum((g.power_w for g in snapshot.gpu.gpus if g.power_w is not None), 0.0)
    host = host_watts(snapshot.cpu.total_percent, cost.host_idle_watts, cost.busy_watts)
    energy = (gpu_watts + host) / 1000 * cost.electricity_per_kwh
    return CostRate(
        gpu_watts + host,
        gpu_watts,
        host,
        energy,
        cost.hardware_per_hour,
        energy + cost.hardware_per_hour,
        cost.currency,
        [g.index for g in snapshot.gpu.gpus if g.power_w is None],
    )


def cost_between(snapshots: Sequence[MachineSnapshot], start: float, end: float, cost: CostSection) -> RangeCost:
    """Electricity over the sampled part of start..end, plus the hardware's share of all of it."""
    energy = energy_between(snapshots, start, end, cost.host_idle_watts, cost.busy_watts)
    electricity = energy.kwh * cost.electricity_per_kwh
    hardware = (end - start) / 3600 * cost.hardware_per_hour
    return RangeCost(energy, electricity, hardware, electricity + hardware, cost.currency)


def cost_per_1000_predictions(cost: RangeCost, predictions: int) -> float | None:
    """The range's cost spread over the predictions served in it; None when there were none."""
    return cost.total / predictions * 1000 if predictions > 0 else None


class _CostFile(msgspec.Struct, frozen=True):
    """A file read for its ``[cost]`` section alone; its other tables (a whole appliance.toml) are not ours."""

    cost: CostSection = CostSection()


def load_cost(path: Path) -> CostSection:
    """The ``[cost]`` section of a TOML file (defaults when the file has none)."""
    return load_toml(path, _CostFile, "cost file", "a TOML file with a [cost] section").cost

"""What a training run used of the machine, recorded with the run (GPU utilization, memory peak, energy, cost;
CPU use and time without a GPU), and the MLP's batching where its rows live (the same epochs on the CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pynvml
import pytest
import torch

from appliance.errors import InvalidInput
from appliance.features.encoding import FeatureColumn, FeatureSchema
from appliance.home import Home
from appliance.machine.gpus import GpuProbe
from appliance.spec import load_spec
from appliance.tracking.queries import run_detail
from appliance.training.mlp_trainer import TrainingRows, batch_size, mixed_precision, train_mlp
from appliance.training.pipeline import train
from tests.conftest import ok
from tests.fake_nvml import H100, T4, FakeNvml
from tests.task_data import write_deliveries, write_tickets
from tui.runs import describe

COST = """[cost]
electricity_per_kwh = 0.25
currency = "CHF"
hardware_price = 24000
amortization_years = 4
host_idle_watts = 60
host_busy_watts = 180
"""


class MovingCounters(FakeNvml):
    """NVML whose energy counters move as a working GPU's do: each reading finds 40 J more than the last."""

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        value = super().nvmlDeviceGetTotalEnergyConsumption(handle)  # the T4 has none: NotSupported
        self.devices[handle]["energy_mj"] = value + 40_000
        return value


def _trained(tmp_path: Path, spec_path: Path, nvml: FakeNvml, settings: str | None = None):
    root = tmp_path / "home"
    with Home(root) as home:
        spec = load_spec(spec_path)
        home.add_model(spec)
        if settings is not None:
            home.layout.settings.write_text(settings)
        outcome = train(home, spec, gpus=GpuProbe(nvml))
        return root, run_detail(home.tracking, outcome.run_id)


def test_an_mlp_run_on_gpus_records_their_utilization_memory_peak_energy_and_cost(tmp_path):
    # a regression MLP over string courier keys, on a box with an H100 (energy counter) and a T4 (power only)
    spec = write_deliveries(tmp_path / "data", days=6, live_days=1, per_day=150, trainer="mlp")
    nvml = MovingCounters([H100, T4])
    root, detail = _trained(tmp_path, spec, nvml, COST)
    m, tags = detail.metrics, detail.tags
    assert m["gpu_utilization_mean"] == pytest.approx((87 + 20) / 2)  # the fake GPUs' steady readings
    assert m["gpu_utilization_max"] == 87
    assert m["gpu_memory_peak_bytes"] == H100["memory_used"]
    assert tags["gpus"] == "NVIDIA H100 80GB HBM3, Tesla T4"
    assert tags["gpu_energy_source"] == "counter+integrated"  # the H100's counter, the T4's power × time
    # the counter's 40 J per reading, and the T4's 30 W over the run
    readings = nvml.devices[0]["energy_mj"] // 40_000 - H100["energy_mj"] // 40_000
    assert m["gpu_energy_joules"] == pytest.approx(40 * (readings - 1) + 30 * m["duration_seconds"], rel=0.05)
    assert m["host_energy_joules"] >= 60 * m["duration_seconds"] * 0.99
    hardware = 24000 / (4 * 365.25 * 24) * m["duration_seconds"] / 3600
    electricity = (m["gpu_energy_joules"] + m["host_energy_joules"]) / 3.6e6 * 0.25
    assert m["cost_hardware"] == pytest.approx(hardware, rel=1e-3)
    assert m["cost_electricity"] == pytest.approx(electricity, rel=1e-3)
    assert m["cost"] == pytest.approx(hardware + electricity, rel=1e-6)
    assert tags["cost_currency"] == "CHF"
    assert m["process_cpu_seconds"] > 0 and 0 <= m["cpu_utilization_mean"] <= 100
    assert "no_gpu" not in tags

    shown = ok(root, "runs", "show", detail.run.id)
    assert "gpu_utilization_mean" in shown and "gpu_energy_joules" in shown and "CHF" in shown
    line = next(x for x in describe(detail, {}, 100) if x.startswith("machine:"))
    assert "GPU NVIDIA H100 80GB HBM3, Tesla T4 53.5 % mean, 87 % max, memory peak 10.00 GB" in line
    assert "CHF" in line


def test_a_run_without_a_gpu_records_cpu_figures_and_why_there_are_no_gpu_ones(tmp_path):
    # a multiclass LightGBM model with no entity and integer codes, on a box whose NVIDIA driver is missing
    spec = write_tickets(tmp_path / "data", days=6, live_days=1, per_day=200)
    nvml = FakeNvml([], init_error=pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    _, detail = _trained(tmp_path, spec, nvml)
    m, tags = detail.metrics, detail.tags
    assert tags["no_gpu"] == "the NVIDIA driver library libnvidia-ml is not installed"
    assert not {k for k in m if k.startswith(("gpu_", "cost", "host_"))}  # no [cost]: nothing priced either
    assert m["process_cpu_seconds"] > 0 and 0 <= m["cpu_utilization_mean"] <= 100 and m["duration_seconds"] > 0
    line = next(x for x in describe(detail, {}, 100) if x.startswith("machine:"))
    assert "no GPU figures (the NVIDIA driver library libnvidia-ml is not installed)" in line


def test_rows_on_the_device_give_every_row_once_an_epoch_in_the_order_the_trainer_always_drew():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1003, 4)).astype(np.float32)
    x[:, 0] = np.arange(1003)  # each row knows its index
    rows = TrainingRows(x, np.arange(1003, dtype=np.int64), torch.device("cpu"))
    assert rows.resident
    for epoch in (0, 1):
        order = rows.order(seed=9, epoch=epoch)
        # the trainer's loader before rows lived on the device: a CPU permutation seeded by (seed, epoch)
        before = torch.randperm(1003, generator=torch.Generator().manual_seed(9 * 100_003 + epoch))
        assert torch.equal(order, before)
        batches = list(rows.batches(order, 128))
        assert [len(b[1]) for b in batches] == [128] * 7 + [107]
        seen = torch.cat([labels for _, labels in batches])
        assert torch.equal(seen, before)  # in that order, so every row once
        assert torch.equal(torch.cat([f[:, 0] for f, _ in batches]).long(), seen)  # features follow their labels
    assert not torch.equal(rows.order(9, 0), rows.order(9, 1))


def test_the_cpu_trains_as_before_and_the_gpu_defaults_apply_on_a_gpu_only():
    schema = FeatureSchema(
        [
            FeatureColumn("reading", "float"),
            FeatureColumn("site", "category", ["n", "s", "e", "w"]),
            FeatureColumn("count", "int"),
        ]
    )
    rng = np.random.default_rng(11)
    x = np.column_stack([rng.normal(0, 2, 1500), rng.integers(0, 4, 1500), rng.integers(0, 50, 1500)])
    x = x.astype(np.float32)
    y = ((x[:, 0] > 0.5) ^ (x[:, 1] == 3)).astype(np.int8)
    losses: list[float] = []
    model = train_mlp(
        schema, x, y, {"epochs": 2, "hidden": 8, "batch_size": 128}, seed=5, log_metric=lambda _, v, e: losses.append(v)
    )
    # what the trainer gave for this seed before the GPU changes (a different batch order moves these by 1e-2)
    assert losses == pytest.approx([0.6868307997385661, 0.6716196977297465], abs=1e-4)
    assert model.predict(x[:4]) == pytest.approx([0.48415339, 0.51003158, 0.51956344, 0.45429146], abs=1e-4)

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert batch_size({}, 5_000_000, cpu) == 512 and mixed_precision({"amp": True}, cpu) is None
    assert batch_size({}, 5_000_000, gpu) == 8192
    assert batch_size({}, 20_000, gpu) == 512  # a small set keeps its steps an epoch
    assert batch_size({"batch_size": 64}, 5_000_000, gpu) == 64
    assert mixed_precision({"amp": False}, gpu) is None
    with pytest.raises(InvalidInput, match="amp"):
        mixed_precision({"amp": "yes"}, cpu)

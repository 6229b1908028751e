"""Machine telemetry: GPUs through a fake NVML, the real NVML path here, energy and cost by hand,
disk use per part of a real data directory, the sampler's ring, and `appliance machine`."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pynvml
import pytest

from appliance.errors import InvalidInput, NotFound
from appliance.home import Home
from appliance.machine.cost import CostSection, cost_between, cost_per_1000_predictions, cost_per_hour, load_cost
from appliance.machine.disk import disk_use
from appliance.machine.energy import energy_between
from appliance.machine.gpus import GpuProbe, GpuReading, GpuStatus
from appliance.machine.host import CpuUse, MemoryUse, ProcessUse
from appliance.machine.sampler import MachineSampler
from appliance.machine.snapshot import MachineProbe, MachineSnapshot
from tests.fake_nvml import H100, NOT_SUPPORTED, T4, FakeNvml

ROOT = Path(__file__).resolve().parent.parent


def nvml_library_present() -> bool:
    """Whether this machine has the NVIDIA driver's library, found the way pynvml looks for it."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        return True
    except OSError:
        return False


# --- GPUs through NVML -------------------------------------------------------------------------


def test_two_fake_gpus_read_every_field_or_say_why_not() -> None:
    status = GpuProbe(FakeNvml([H100, T4])).read(100.0)
    assert status.available and status.driver_version == "550.54.15"
    h100, t4 = status.gpus
    assert h100 == GpuReading(
        0,
        "NVIDIA H100 80GB HBM3",
        "GPU-aaaa",
        87.0,
        10_000_000_000,
        80_000_000_000,
        54.0,
        312.0,
        700.0,
        5_000_000.0,
        "counter",
        {},
    )
    assert (t4.index, t4.name, t4.utilization_percent, t4.power_w, t4.power_limit_w) == (
        1,
        "Tesla T4",
        20.0,
        30.0,
        70.0,
    )
    assert t4.temperature_c is None
    assert t4.unread == {"temperature_c": "not supported", "energy_counter": "not supported"}
    assert (t4.energy_mj, t4.energy_source) == (0.0, "integrated")


def test_energy_without_a_counter_is_power_integrated_between_readings() -> None:
    nvml = FakeNvml([T4])
    probe = GpuProbe(nvml)
    probe.read(100.0)  # 30 W
    nvml.devices[0]["power_mw"] = 90_000
    assert probe.read(110.0).gpus[0].energy_mj == pytest.approx((30 + 90) / 2 * 10 * 1000)  # 600 J
    assert probe.read(110.0).gpus[0].energy_mj == pytest.approx(600_000)  # same instant: nothing added
    assert probe.read(112.0).gpus[0].energy_mj == pytest.approx(600_000 + 90 * 2 * 1000)
    nvml.devices[0]["power_mw"] = NOT_SUPPORTED  # no counter and no power: energy unknown
    reading = probe.read(113.0).gpus[0]
    assert (reading.energy_mj, reading.energy_source, reading.power_w) == (None, None, None)


def test_nvml_starts_once_and_one_failing_field_costs_only_that_field() -> None:
    nvml = FakeNvml([H100, T4])
    nvml.devices[0]["power_mw"] = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
    probe = GpuProbe(nvml)
    for at in (1.0, 2.0, 3.0):
        status = probe.read(at)
    assert nvml.inits == 1
    h100 = status.gpus[0]
    assert h100.power_w is None and "GPU is lost" in h100.unread["power_w"]
    assert h100.energy_mj == 5_000_000 and h100.utilization_percent == 87  # the counter still reads
    probe.close()
    assert nvml.shutdowns == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), "libnvidia-ml is not installed"),
        (pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED), "NVIDIA driver is not loaded"),
        (pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION), "NVML failed to start: Insufficient Permissions"),
    ],
)
def test_no_gpu_is_said_plainly(error: Exception, reason: str) -> None:
    nvml = FakeNvml([H100], init_error=error)
    probe = GpuProbe(nvml)
    status = probe.read(1.0)
    assert not status.available and status.gpus == [] and reason in status.no_gpu_reason
    probe.read(2.0)
    probe.close()
    assert (nvml.inits, nvml.shutdowns) == (1, 0)


def test_a_driver_with_no_devices_is_no_gpu() -> None:
    status = GpuProbe(FakeNvml([])).read(1.0)
    assert not status.available and status.no_gpu_reason == "the NVIDIA driver reports no devices"


def test_the_real_nvml_on_this_machine() -> None:
    probe = GpuProbe()
    status = probe.read(time.time())
    probe.close()
    if nvml_library_present():
        assert status.available == bool(status.gpus)
        assert all(g.memory_total_bytes for g in status.gpus)
    else:
        assert not status.available
        assert status.no_gpu_reason == "the NVIDIA driver library libnvidia-ml is not installed"


# --- energy and cost, by hand ------------------------------------------------------------------


def snapshot(
    at: float, cpu_percent: float = 0.0, gpus: list[tuple[str, float | None, float | None]] = ()
) -> MachineSnapshot:
    """A snapshot with given CPU use and GPUs as (uuid, energy mJ, power W)."""
    readings = [
        GpuReading(i, "fake", uuid, 50.0, 1, 2, 40.0, power, 300.0, energy, "counter" if energy is not None else None)
        for i, (uuid, energy, power) in enumerate(gpus)
    ]
    return MachineSnapshot(
        at,
        CpuUse(cpu_percent, [cpu_percent], (0.0, 0.0, 0.0)),
        MemoryUse(1, 2),
        ProcessUse(1, 1, 0.0),
        GpuStatus(readings),
        None,
    )


def test_energy_between_two_instants_interpolates_counters_and_survives_a_reset() -> None:
    series = [
        snapshot(0, 0, [("a", 0.0, 100)]),
        snapshot(10, 100, [("a", 1_000_000.0, 100)]),
        snapshot(20, 100, [("a", 3_000_000.0, 100)]),
        snapshot(30, 100, [("a", 100_000.0, 100)]),
        snapshot(40, 100, [("a", 600_000.0, 100)]),
    ]
    use = energy_between(series, 5, 15, idle_watts=50, busy_watts=150)
    assert use.gpus[0].joules == pytest.approx(500 + 1000)  # half of each 10 s step
    # Host power 50 W at t=0, 150 W from t=10: 0..10 is a 1000 J trapezoid and 10..20 is 1500 J; like a
    # counter's, a step's energy is spread evenly over it, so 5..15 holds half of each.
    assert use.host_joules == pytest.approx(500 + 750)
    assert use.kwh == pytest.approx((1500 + 1250) / 3.6e6)
    assert use.sampled_seconds == 10
    after_reset = energy_between(series, 20, 40)
    assert after_reset.gpus[0].joules == pytest.approx(500)  # the driver reloaded: 20..30 adds nothing
    outside = energy_between(series, -10, 50)
    assert outside.sampled_seconds == 40 and outside.gpus[0].joules == pytest.approx(3000 + 500)
    with pytest.raises(ValueError):
        energy_between(series, 10, 5)


def test_cost_per_hour_per_range_and_per_1000_predictions_by_hand() -> None:
    # 26,298 over 3 years of 8,766 hours is exactly 1.0 an hour of owning the box.
    cost = CostSection(
        electricity_per_kwh=0.30, hardware_price=26_298, amortization_years=3, host_idle_watts=40, host_busy_watts=120
    )
    assert cost.hardware_per_hour == pytest.approx(1.0)
    now = snapshot(0, cpu_percent=50, gpus=[("a", 0.0, 312.0), ("b", None, 30.0), ("c", None, None)])
    rate = cost_per_hour(now, cost)
    assert (rate.gpu_watts, rate.host_watts, rate.watts) == (342.0, 80.0, 422.0)
    assert rate.energy_per_hour == pytest.approx(0.422 * 0.30)
    assert rate.total_per_hour == pytest.approx(0.1266 + 1.0)
    assert rate.unmeasured_gpus == [2]

    flat = CostSection(electricity_per_kwh=0.30, hardware_price=26_298, amortization_years=3, host_idle_watts=100)
    run = [snapshot(0, 0, [("a", 0.0, 1000.0)]), snapshot(3600, 0, [("a", 3.6e9, 1000.0)])]  # 1 kWh of GPU
    spent = cost_between(run, 0, 3600, flat)
    assert spent.energy.kwh == pytest.approx(1.1)  # GPU 1 kWh + host 100 W × 1 h
    assert spent.energy_cost == pytest.approx(0.33)
    assert spent.hardware_cost == pytest.approx(1.0)
    assert spent.total == pytest.approx(1.33)
    assert cost_per_1000_predictions(spent, 2000) == pytest.approx(0.665)
    assert cost_per_1000_predictions(spent, 0) is None


def test_cost_section_checks_its_values(tmp_path: Path) -> None:
    # The limits live in the types, so they are checked as a file is read, and the error names the field.
    path = tmp_path / "cost.toml"
    for line, message in [
        ("electricity_per_kwh = -0.1", r"cost\.electricity_per_kwh: Expected `float` >= 0"),
        ("amortization_years = 0", r"cost\.amortization_years: Expected `float` > 0"),
        ("host_idle_watts = 100\nhost_busy_watts = 50", r"cost\.host_busy_watts: 50\.0 is below"),
    ]:
        path.write_text(f"[cost]\n{line}\n")
        with pytest.raises(InvalidInput, match=message):
            load_cost(path)
    with pytest.raises(InvalidInput, match="host_busy_watts"):  # one field against another: built in code too
        CostSection(host_idle_watts=100, host_busy_watts=50)
    path.write_text("[cost]\nelectricity_per_kwh = 0.25\ncurrency = 'CHF'\n")
    assert load_cost(path) == CostSection(electricity_per_kwh=0.25, currency="CHF")
    path.write_text("[cost]\nelectricity_price = 0.25\n")
    with pytest.raises(InvalidInput, match="electricity_price"):
        load_cost(path)
    path.write_text("[model]\nname = 'x'\n")
    assert not load_cost(path).configured
    with pytest.raises(NotFound):
        load_cost(tmp_path / "missing.toml")


# --- disk use ----------------------------------------------------------------------------------


def test_disk_use_per_part_of_a_real_data_directory(tmp_path: Path) -> None:
    root = tmp_path / "home"
    with Home(root) as home:
        digest = home.artifacts.put(b"x" * 5000)
        assert digest
    (root / "offline" / "snapshots").mkdir(parents=True, exist_ok=True)
    (root / "offline" / "snapshots" / "part-0.parquet").write_bytes(b"p" * 7000)
    (root / "predictions.db").write_bytes(b"d" * 4096)
    (root / "predictions.db-wal").write_bytes(b"w" * 1000)
    (root / "notes.txt").write_bytes(b"n" * 300)
    outside = tmp_path / "big.bin"
    outside.write_bytes(b"b" * 1_000_000)
    (root / "link-to-big").symlink_to(outside)

    use = disk_use(root)
    parts = {p.name: p.bytes for p in use.parts}
    metadata = sum(p.stat().st_size for p in root.glob("metadata.db*"))
    assert parts["metadata.db"] == metadata > 0
    assert parts["artifacts/"] >= 5000 and parts["offline/"] == 7000
    assert parts["predictions.db"] == 5096
    assert parts["other"] == 300 + len(str(outside))  # a link counts as itself, not its target
    assert set(parts) == {"metadata.db", "artifacts/", "offline/", "predictions.db", "other"}
    assert use.total_bytes == sum(parts.values())
    assert [p.bytes for p in use.parts] == sorted(parts.values(), reverse=True)
    assert 0 < use.filesystem_free_bytes <= use.filesystem_total_bytes


# --- the sampler -------------------------------------------------------------------------------


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_sampler_keeps_a_bounded_ring_and_integrates_energy_on_its_own_clock(tmp_path: Path) -> None:
    Home(tmp_path).close()
    nvml = FakeNvml([H100, T4])
    sampler = MachineSampler(MachineProbe(tmp_path, GpuProbe(nvml)), interval=0.01, keep=5, disk_every=3600)
    with sampler:
        wait_for(lambda: len(sampler.snapshots()) == 5)
        first = sampler.snapshots()[0]
        wait_for(lambda: sampler.snapshots()[0].taken_at > first.taken_at)  # old ones leave the ring
    ring = sampler.snapshots()
    assert len(ring) == 5 and nvml.inits == 1 and nvml.shutdowns == 1
    times = [s.taken_at for s in ring]
    assert times == sorted(times)
    assert all(s.disk is ring[0].disk and s.disk is not None for s in ring)  # measured once, carried
    t4 = [s.gpu.gpus[1] for s in ring]
    assert t4[-1].energy_mj - t4[0].energy_mj == pytest.approx(30 * (times[-1] - times[0]) * 1000)
    assert energy_between(ring, times[0], times[-1]).gpus[1].joules == pytest.approx(30 * (times[-1] - times[0]))


def test_sampler_goes_on_after_a_failed_reading(tmp_path: Path) -> None:
    nvml = FakeNvml([H100])
    calls = {"n": 0}
    real_count = nvml.nvmlDeviceGetCount

    def flaky_count() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a reading that fails once")
        return real_count()

    nvml.nvmlDeviceGetCount = flaky_count
    with MachineSampler(MachineProbe(None, GpuProbe(nvml)), interval=0.01, keep=10) as sampler:
        wait_for(lambda: len(sampler.snapshots()) >= 2)
    assert calls["n"] >= 3 and sampler.snapshots()[0].gpu.gpus[0].name == H100["name"]


# --- the command line --------------------------------------------------------------------------


def appliance(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home), "machine", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_cli_machine_without_a_data_directory_reads_and_creates_nothing(tmp_path: Path) -> None:
    out = appliance(tmp_path / "nowhere")
    assert out.returncode == 0, out.stderr
    assert "does not exist yet" in out.stdout and not (tmp_path / "nowhere").exists()
    assert re.search(r"^CPU +\d+ cores, [\d.]+ % busy", out.stdout, re.M)
    assert re.search(r"^memory +[\d.]+ [kMGT]?B used of", out.stdout, re.M)
    if not nvml_library_present():
        assert "GPU       no NVIDIA GPU (the NVIDIA driver library libnvidia-ml is not installed)" in out.stdout
    assert "cost      not configured" in out.stdout


def test_cli_machine_shows_disk_per_part_and_cost_per_hour(tmp_path: Path) -> None:
    Home(tmp_path / "home").close()
    cost = tmp_path / "cost.toml"
    cost.write_text("[cost]\nelectricity_per_kwh = 0.30\nhardware_price = 26298\namortization_years = 3\n")
    out = appliance(tmp_path / "home", "--cost", str(cost))
    assert out.returncode == 0, out.stderr
    assert re.search(r"^ +metadata\.db +[\d.]+ kB$", out.stdout, re.M)
    assert re.search(
        r"^cost +[\d.]+ EUR/h: electricity [\d.]+ EUR/h at 0.3 EUR/kWh, hardware 1.0000 EUR/h", out.stdout, re.M
    )

    body = json.loads(appliance(tmp_path / "home", "--cost", str(cost), "--json").stdout)
    rate = body["cost_per_hour"]
    assert rate["hardware_per_hour"] == pytest.approx(1.0)
    assert rate["total_per_hour"] == pytest.approx(1.0 + rate["gpu_watts"] / 1000 * 0.30)
    assert {p["name"] for p in body["snapshot"]["disk"]["parts"]} >= {"metadata.db", "artifacts/"}
    assert body["snapshot"]["gpu"]["no_gpu_reason"] is None or body["snapshot"]["gpu"]["gpus"] == []


def test_cli_machine_with_a_bad_cost_file_says_what_to_fix(tmp_path: Path) -> None:
    cost = tmp_path / "cost.toml"
    cost.write_text("[cost]\nelectricity_per_kwh = -1\n")
    out = appliance(tmp_path, "--cost", str(cost))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"error: cost file {cost}: cost.electricity_per_kwh: Expected `float` >= 0.0, "
        "got -1; fix the file and try again"
    )

"""Run the machine sampler against the real GPUs while a CUDA matmul load runs; print what it read.

One JSON summary: every field each GPU reported (or why not), utilization, memory, temperature and
power ranges, and energy over the run both from the driver's counter ("measured") and from power
integrated over the samples ("integrated"), with their ratio. Idle for the first few seconds, so the
utilization range spans idle to busy. Written to $OUT/gpu_telemetry.json when $OUT is set. On a
machine without an NVIDIA GPU it samples briefly and says "no GPU".

    python scripts/device/gpu_telemetry_check.py [--seconds 20] [--interval 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.machine.cost import CostSection, cost_between, cost_per_hour
from appliance.machine.gpus import GpuProbe
from appliance.machine.sampler import MachineSampler
from appliance.machine.snapshot import MachineProbe, MachineSnapshot

# An illustrative price only, so the cost functions run on real readings; not a configured one.
EXAMPLE_COST = CostSection(
    electricity_per_kwh=0.30, hardware_price=30_000, amortization_years=3, host_idle_watts=150, host_busy_watts=400
)


def cuda_operands():
    """Two 8192² bf16 matrices on cuda:0, made before sampling starts; or why there is no load."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch.cuda is not available"
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    return a, b


def matmul_load(operands, stop: threading.Event, idle_seconds: float, result: dict) -> None:
    """Matmuls until stopped, after an idle start; counts the work done."""
    import torch

    a, b = operands
    if stop.wait(idle_seconds):
        return
    started, done = time.perf_counter(), 0
    while not stop.is_set():
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
        done += 20
    seconds = time.perf_counter() - started
    result["load"] = {
        "device": torch.cuda.get_device_name(0),
        "idle_first_seconds": idle_seconds,
        "matmuls_8192_bf16": done,
        "seconds": round(seconds, 2),
        "tflops": round(done * 2 * 8192**3 / seconds / 1e12, 1),
    }


def gpu_summary(ring: list[MachineSnapshot], uuid: str) -> dict:
    readings = [(s.taken_at, g) for s in ring for g in s.gpu.gpus if g.uuid == uuid]
    last = readings[-1][1]

    def span(field: str) -> dict | None:
        values = [getattr(g, field) for _, g in readings if getattr(g, field) is not None]
        return {"min": min(values), "max": max(values)} if values else None

    integrated = sum(
        (g0.power_w + g1.power_w) / 2 * (t1 - t0)
        for (t0, g0), (t1, g1) in pairwise(readings)
        if g0.power_w is not None and g1.power_w is not None
    )
    energies = [(t, g.energy_mj) for t, g in readings if g.energy_mj is not None]
    counted = (energies[-1][1] - energies[0][1]) / 1000 if len(energies) > 1 else None
    return {
        "index": last.index,
        "name": last.name,
        "uuid": uuid,
        "fields_read": {
            f: getattr(last, f)
            for f in (
                "utilization_percent",
                "memory_used_bytes",
                "memory_total_bytes",
                "temperature_c",
                "power_w",
                "power_limit_w",
                "energy_mj",
            )
        },
        "fields_unread": last.unread,
        "utilization_percent": span("utilization_percent"),
        "memory_used_bytes": span("memory_used_bytes"),
        "temperature_c": span("temperature_c"),
        "power_w": span("power_w"),
        "energy_source": last.energy_source,
        "energy_joules": {
            "from_energy_field": counted,  # the counter on boards that have one, else the probe's integral
            "power_integrated_here": round(integrated, 1),
            "ratio_field_to_integrated": (
                round(counted / integrated, 4) if counted is not None and integrated > 0 else None
            ),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="default: 20 with a GPU, 2 without")
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()

    probe = GpuProbe()
    first = probe.read(time.time())
    seconds = args.seconds or (20.0 if first.available else 2.0)
    operands = cuda_operands() if first.available else "no GPU, no load"
    load: dict = {} if isinstance(operands, tuple) else {"load": operands}
    sampler = MachineSampler(MachineProbe(None, probe), interval=args.interval, keep=100_000)
    stop = threading.Event()
    worker = threading.Thread(target=matmul_load, args=(operands, stop, min(4.0, seconds / 4), load), daemon=True)
    with sampler:
        if isinstance(operands, tuple):
            worker.start()
        time.sleep(seconds)
        stop.set()
        if worker.is_alive():
            worker.join(timeout=30)
    ring = sampler.snapshots()
    start, end = ring[0].taken_at, ring[-1].taken_at
    spent = cost_between(ring, start, end, EXAMPLE_COST)
    summary = {
        "gpu": "no GPU: " + first.no_gpu_reason if not first.available else f"{len(first.gpus)} NVIDIA GPU(s)",
        "driver_version": first.driver_version,
        "samples": len(ring),
        "sampled_seconds": round(end - start, 2),
        "interval": args.interval,
        "load": load.get("load"),
        "cpu_total_percent": {
            "min": min(s.cpu.total_percent for s in ring),
            "max": max(s.cpu.total_percent for s in ring),
        },
        "memory_used_bytes_max": max(s.memory.used_bytes for s in ring),
        "process_rss_bytes_max": max(s.process.rss_bytes for s in ring),
        "gpus": [gpu_summary(ring, g.uuid) for g in ring[-1].gpu.gpus],
        "example_cost": {
            "section": EXAMPLE_COST,
            "per_hour_at_end": cost_per_hour(ring[-1], EXAMPLE_COST),
            "over_run": spent,
        },
    }
    text = json.dumps(json.loads(msgspec.json.encode(summary)), indent=2)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_telemetry.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One device check: the MLP's training on a GPU against the CPU, on generated data large enough to matter.

    python scripts/device/mlp_train_gpu_check.py [--rows 5000000] [--features 40] [--epochs 3]
        [--cpu-epochs 1] [--host-idle-watts 0 --host-busy-watts 0]

Generates a binary data set (``--features`` columns: floats, integers and a few categories; a target
that needs the hidden layers), then trains the appliance's MLP (``train_mlp``) on it:

- ``cuda``: as the appliance trains on a GPU now: rows resident on the device, the GPU batch size, AMP;
- ``cuda, as before``: batch 512 in fp32 (the defaults that left an H200 at 0.9 % mean utilization);
- ``cpu``: batch 512 in fp32 on every core, for ``--cpu-epochs`` epochs (samples/s is per epoch anyway).

Each is metered as a training run is (``UsageMeter``: NVML every 0.2 s) and prints samples/s, mean and
max GPU utilization, GPU memory peak, energy per epoch (GPU measured; the host estimated from CPU use
when its wattage is given), the validation AUC and the ONNX export's parity, then each row's ratio to
the CPU's. Writes the same as JSON to $OUT/mlp_train_gpu.json when $OUT is set. Without CUDA it says
so and prints the CPU row (run it so here with tiny options: --rows 20000 --features 8 --epochs 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from appliance.features.encoding import FeatureColumn, FeatureSchema  # noqa: E402
from appliance.machine.cost import CostSection  # noqa: E402
from appliance.machine.snapshot import MachineProbe  # noqa: E402
from appliance.machine.usage import UsageMeter  # noqa: E402
from appliance.scoring import onnx_model  # noqa: E402
from appliance.scoring.metrics import roc_auc  # noqa: E402

CATEGORIES = 4  # of the features, this many are categories (12 values each); a third of the rest integers
HELD_OUT = 0.1  # the last tenth of the rows scores each model


def generate(rows: int, features: int, seed: int = 0) -> tuple[FeatureSchema, np.ndarray, np.ndarray]:
    """Skewed floats, small integers and categories; the target is an interaction no linear model finds."""
    rng = np.random.default_rng(seed)
    categories = min(CATEGORIES, max(features - 2, 0))
    numeric = features - categories
    columns = []
    x = np.empty((rows, features), dtype=np.float32)
    for i in range(numeric):
        if i % 3 == 2:
            x[:, i] = rng.integers(0, 30, rows)
            columns.append(FeatureColumn(f"count_{i}", "int"))
        else:
            x[:, i] = rng.lognormal(0.0, 1.0, rows) if i % 2 else rng.normal(0.0, 1.0, rows)
            columns.append(FeatureColumn(f"reading_{i}", "float"))
    for j in range(categories):
        x[:, numeric + j] = rng.integers(0, 12, rows)
        columns.append(FeatureColumn(f"kind_{j}", "category", [f"k{v}" for v in range(12)]))
    weights = rng.normal(0.0, 1.0, numeric) / np.sqrt(numeric)
    score = np.tanh(x[:, :numeric] @ weights) * 2 + np.sin(x[:, 0] * 2)
    if categories:
        score += np.where(x[:, numeric] % 3 == 0, 1.0, -0.5) * np.sign(x[:, 0])
    y = (score + rng.logistic(0.0, 0.5, rows) > 0).astype(np.int8)
    return FeatureSchema(columns), x, y


def measure(name: str, where, params: dict, epochs: int, data, cost: CostSection) -> dict:
    """Train on ``where`` metered; the row the table prints."""
    from appliance.training.mlp_trainer import train_mlp

    schema, x, y = data
    split = int(len(y) * (1 - HELD_OUT))
    meter = UsageMeter(MachineProbe(), cost, interval=0.2)
    started = time.perf_counter()
    with meter:
        model = train_mlp(schema, x[:split], y[:split], {**params, "epochs": epochs}, seed=7, on=where)
    seconds = time.perf_counter() - started
    usage = meter.usage()
    held_x, held_y = x[split:], y[split:]
    p = model.predict(held_x)
    sample = held_x[:20_000]
    parity = onnx_model.parity(onnx_model.session(model.to_onnx(), ["CPUExecutionProvider"]), p[:20_000], sample)
    energy = (usage.gpu_energy_joules or 0.0) + (usage.host_energy_joules or 0.0)
    return {
        "run": name,
        "device": str(where),
        "params": params,
        "epochs": epochs,
        "seconds": round(seconds, 2),
        "samples_per_s": round(split * epochs / seconds),
        "gpu_utilization_mean": usage.gpu_utilization_mean,
        "gpu_utilization_max": usage.gpu_utilization_max,
        "gpu_memory_peak_bytes": usage.gpu_memory_peak_bytes,
        "energy_per_epoch_j": round(energy / epochs, 1) if usage.gpus or usage.host_energy_joules else None,
        "gpu_energy_source": usage.gpu_energy_source,
        "cpu_utilization_mean": round(usage.cpu_utilization_mean, 1),
        "process_cpu_seconds": round(usage.process_cpu_seconds, 1),
        "validation_auc": round(roc_auc(held_y, p), 4),
        "onnx_parity": parity,
        "no_gpu_reason": usage.no_gpu_reason,
    }


def table(rows: list[dict]) -> list[str]:
    """The rows as text, with each one's samples/s and energy per epoch against the CPU's."""
    cpu = next(r for r in rows if r["device"] == "cpu")

    def number(value, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:,.1f}{unit}"

    def ratio(r: dict, key: str) -> str:
        return f"{r[key] / cpu[key]:.2f}×" if r[key] and cpu[key] else "n/a"

    header = ("RUN", "SAMPLES/S", "×CPU", "GPU UTIL MEAN", "MAX", "ENERGY/EPOCH", "×CPU", "AUC", "PARITY")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["run"],
                f"{r['samples_per_s']:,}",
                ratio(r, "samples_per_s"),
                number(r["gpu_utilization_mean"], " %"),
                number(r["gpu_utilization_max"], " %"),
                number(r["energy_per_epoch_j"], " J"),
                ratio(r, "energy_per_epoch_j"),
                f"{r['validation_auc']:.4f}",
                f"{r['onnx_parity']:.1e}",
            )
        )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each GPU run")
    parser.add_argument("--cpu-epochs", type=int, default=1, help="epochs of the CPU run (slow on big data)")
    parser.add_argument("--host-idle-watts", type=float, default=0.0, help="the host's wall power at idle")
    parser.add_argument("--host-busy-watts", type=float, default=0.0, help="… and fully busy (0: not counted)")
    args = parser.parse_args()
    import torch

    from appliance.training.mlp_trainer import train_mlp

    cost = CostSection(host_idle_watts=args.host_idle_watts, host_busy_watts=args.host_busy_watts or None)
    t0 = time.perf_counter()
    data = generate(args.rows, args.features)
    result: dict = {
        "cuda": torch.cuda.is_available(),
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "rows": args.rows,
        "features": args.features,
        "generated_s": round(time.perf_counter() - t0, 1),
        "runs": [],
    }
    if result["cuda"]:
        cuda = torch.device("cuda")
        schema, x, y = data  # CUDA's start-up (context, kernels) is not what the first run measures
        train_mlp(schema, x[:50_000], y[:50_000], {"epochs": 1}, seed=7, on=cuda)
        result["runs"].append(measure("cuda", cuda, {}, args.epochs, data, cost))
        before = {"batch_size": 512, "amp": False}
        result["runs"].append(measure("cuda, as before", cuda, before, args.epochs, data, cost))
    else:
        print("CUDA is unavailable: only the CPU row is measured", file=sys.stderr)
    result["runs"].append(measure("cpu", torch.device("cpu"), {}, args.cpu_epochs, data, cost))
    lines = table(result["runs"])
    print(f"{args.rows:,} rows × {args.features} features on {result['device_name'] or 'no GPU'}")
    print("\n".join(lines))
    text = json.dumps(result, indent=2, default=str)
    if os.environ.get("OUT"):  # the device machine's folder that comes back
        Path(os.environ["OUT"], "mlp_train_gpu.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

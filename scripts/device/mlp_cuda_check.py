"""One device check: the MLP trained on CUDA, its worker killed with SIGKILL and resumed, NVML sampled.

    python scripts/device/mlp_cuda_check.py [--epochs 6] [--days 45]

Trains the sample's MLP through the real pipeline (a spawned worker, checkpoints in the data
directory) twice: once uninterrupted, once SIGKILLed right after its first checkpoint and then
resumed with `--resume` semantics. NVML (utilization, memory, power, energy) is sampled every
200 ms meanwhile. Prints one JSON summary, also written to $OUT/mlp_cuda.json when $OUT is set.
Without a GPU it runs on the CPU and says so ("cuda": false).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from appliance.config import bundled_spec_path  # noqa: E402
from appliance.home import Home  # noqa: E402
from appliance.layout import Layout  # noqa: E402
from appliance.spec import load_spec  # noqa: E402
from appliance.training import runs  # noqa: E402
from appliance.training.stages import TrainOutputs  # noqa: E402
from appliance.training.worker import TrainingInterrupted, train_in_worker  # noqa: E402

TOLERANCE = 0.005  # AUC: CUDA's embedding backward uses atomics, so a resumed run is close, not bitwise equal


class Telemetry(threading.Thread):
    """Samples GPU 0 through NVML until stopped; records why when there is no NVML."""

    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every, self.samples, self.error = every, [], None
        self._stop_event = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            self.name = pynvml.nvmlDeviceGetName(self.handle)
        except Exception as e:  # no driver, no GPU: the check still runs, on the CPU
            self.nvml, self.handle, self.name, self.error = None, None, None, f"{type(e).__name__}: {e}"

    def run(self) -> None:
        while self.nvml and not self._stop_event.is_set():
            n, h = self.nvml, self.handle
            sample = {
                "t": time.time(),
                "util": n.nvmlDeviceGetUtilizationRates(h).gpu,
                "mem_mib": n.nvmlDeviceGetMemoryInfo(h).used / 2**20,
                "power_w": n.nvmlDeviceGetPowerUsage(h) / 1e3,
            }
            try:
                sample["energy_mj"] = n.nvmlDeviceGetTotalEnergyConsumption(h)
            except n.NVMLError:
                pass
            self.samples.append(sample)
            self._stop_event.wait(self.every)

    def stop(self) -> dict:
        self._stop_event.set()
        if self.is_alive():
            self.join()
        if not self.samples:
            return {"available": False, "reason": self.error or "no samples"}
        s = self.samples
        energy = [x["energy_mj"] for x in s if "energy_mj" in x]
        return {
            "available": True,
            "gpu": self.name,
            "samples": len(s),
            "seconds": round(s[-1]["t"] - s[0]["t"], 1),
            "util_mean_pct": round(sum(x["util"] for x in s) / len(s), 1),
            "util_max_pct": max(x["util"] for x in s),
            "mem_max_mib": round(max(x["mem_mib"] for x in s)),
            "power_mean_w": round(sum(x["power_w"] for x in s) / len(s), 1),
            "power_max_w": round(max(x["power_w"] for x in s), 1),
            "energy_j": round((energy[-1] - energy[0]) / 1e3, 1) if len(energy) > 1 else None,
        }


def make_spec(folder: Path, epochs: int, days: int) -> Path:
    """The bundled spec with the MLP trainer, over the first ``days`` days of the sample."""
    import polars as pl

    folder.mkdir(parents=True)
    text = bundled_spec_path().read_text()
    start, end = text.index("[training]"), text.index("[training.search]")
    text = (
        text[:start]
        + (
            f'[training]\ntrainer = "mlp"\neval_days = {max(3, days // 5)}\nseed = 7\n'
            f"checkpoint_every = 1\n\n[training.params]\nepochs = {epochs}\n"
            "batch_size = 1024\n\n"
        )
        + text[end:]
    )
    (folder / "fraud.toml").write_text(text)
    for data in bundled_spec_path().parent.glob("*.toml"):
        if data.name != "fraud.toml":
            (folder / data.name).symlink_to(data)
    (folder / "users.parquet").symlink_to(bundled_spec_path().parent / "users.parquet")
    frame = pl.read_parquet(bundled_spec_path().parent / "transactions.parquet")
    first = frame["event_time"].min()
    frame.filter(pl.col("event_time") < first + pl.duration(days=days)).write_parquet(folder / "transactions.parquet")
    return folder / "fraud.toml"


def new_home(root: Path, spec_path: Path) -> Path:
    with Home(root) as home:
        home.add_model(load_spec(spec_path))
    return root


def kill_after_first_checkpoint(home_dir: Path, killed: dict) -> None:
    """Wait for the worker's first checkpoint, then SIGKILL the worker."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        layout = Layout(home_dir)
        if list(layout.checkpoints.glob("*/final.pt")):
            with sqlite3.connect(layout.metadata_db) as conn:
                row = conn.execute("SELECT id, worker_pid FROM runs WHERE status = 'running'").fetchone()
            if row:
                killed.update(run_id=row[0], pid=row[1], at=time.time())
                os.kill(row[1], signal.SIGKILL)
                return
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--days", type=int, default=45, help="days of sample history to use (45: all)")
    args = parser.parse_args()
    import torch

    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="mlp-cuda-"))
    spec_path = make_spec(work / "spec", args.epochs, args.days)
    telemetry = Telemetry()
    telemetry.start()
    result: dict = {
        "cuda": torch.cuda.is_available(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "epochs": args.epochs,
        "days": args.days,
        "tolerance_auc": TOLERANCE,
    }
    if not result["cuda"]:
        result["note"] = "no CUDA device found: trained on the CPU"
    try:
        plain_home = new_home(work / "uninterrupted", spec_path)
        t0 = time.time()
        plain = train_in_worker(plain_home, "fraud", actor="device-check")
        result["uninterrupted"] = {
            "seconds": round(time.time() - t0, 1),
            "auc": plain.version.metrics["auc"],
            "train_rows": plain.train_rows,
            "eval_rows": plain.eval_rows,
        }
        with Home(plain_home) as home:
            train_stage = next(s for s in runs.pipeline_run(home.conn, plain.run_id).stages if s.stage == "train")
        result["trained_on"] = msgspec.convert(train_stage.outputs, TrainOutputs).device
        result["uninterrupted"]["train_stage_seconds"] = round(train_stage.ended_at - train_stage.started_at, 2)

        killed_home = new_home(work / "killed", spec_path)
        killed: dict = {}
        killer = threading.Thread(target=kill_after_first_checkpoint, args=(killed_home, killed), daemon=True)
        killer.start()
        t0 = time.time()
        try:
            train_in_worker(killed_home, "fraud", actor="device-check")
            result["kill"] = {"error": "the run finished before it could be killed"}
        except TrainingInterrupted as e:
            result["kill"] = {"after_seconds": round(killed["at"] - t0, 1), "message": str(e)}
        resumed = train_in_worker(killed_home, "fraud", actor="device-check", resume=True)
        with Home(killed_home) as home:
            record = runs.pipeline_run(home.conn, resumed.run_id)
        difference = resumed.version.metrics["auc"] - plain.version.metrics["auc"]
        result["resumed"] = {
            "auc": resumed.version.metrics["auc"],
            "reused_stages": resumed.reused_stages,
            "attempts": record.attempts,
            "same_run": resumed.run_id == killed.get("run_id"),
            "auc_difference": difference,
            "within_tolerance": abs(difference) <= TOLERANCE,
            "parity": next(c["value"] for c in resumed.version.gate_report["checks"] if c["name"] == "onnx_parity"),
        }
    finally:
        result["nvml"] = telemetry.stop()
        result["seconds"] = round(time.time() - started, 1)
        shutil.rmtree(work, ignore_errors=True)
        text = json.dumps(result, indent=2, default=str)
        print(text)
        if os.environ.get("OUT"):
            Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
            (Path(os.environ["OUT"]) / "mlp_cuda.json").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Serving latency while a model trains: in a thread of the serving process vs in the worker process.

    python scripts/bench/training_isolation.py [--trainer lightgbm|mlp]

Scores one record at a time with the production model (encode + ONNX Runtime, as the API does)
while nothing trains (the baseline), while `train()` runs in a thread of this process, and while
`train_in_worker()` runs. Prints p50/p99 of each and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.config import bundled_spec_path
from appliance.features.online import materialize_model
from appliance.home import Home
from appliance.serving.models import load_production
from appliance.spec import load_spec
from appliance.training.pipeline import train
from appliance.training.worker import train_in_worker
from tests.conftest import SAMPLE_RECORD


def latencies(model, while_alive: threading.Thread | None, seconds: float = 5.0) -> np.ndarray:
    out = []
    deadline = time.monotonic() + seconds
    while while_alive.is_alive() if while_alive else time.monotonic() < deadline:
        started = time.perf_counter()
        model.predict([SAMPLE_RECORD])
        out.append(time.perf_counter() - started)
        time.sleep(0.001)  # requests arrive one after another, not back to back
    return np.array(out) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trainer", default="lightgbm", choices=["lightgbm", "mlp"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="isolation-"))
    spec_path = bundled_spec_path()
    if args.trainer == "mlp":
        text = spec_path.read_text().replace('trainer = "lightgbm"', 'trainer = "mlp"')
        start, end = text.index("[training.params]"), text.index("[training.search]")
        text = text[:start] + "[training.params]\nepochs = 3\nbatch_size = 1024\n\n" + text[end:]
        spec_path = root / "spec" / "fraud.toml"
        spec_path.parent.mkdir()
        for data in bundled_spec_path().parent.iterdir():
            if data.suffix in (".parquet", ".toml") and data.name != "fraud.toml":
                (spec_path.parent / data.name).symlink_to(data)
        spec_path.write_text(text)
    with Home(root / "home") as home:
        spec = load_spec(spec_path)
        home.add_model(spec)
        train(home, spec)
        home.registry.promote("fraud", 1)
        materialize_model(home, spec)  # a request carries its entity key: the rest comes from the online store
        model = load_production(home, "fraud")
        results = {"idle (baseline)": latencies(model, None)}
        job = threading.Thread(target=train, args=(home, spec))
        job.start()
        results["training in a thread"] = latencies(model, job)
    worker = threading.Thread(target=train_in_worker, args=(root / "home", "fraud"))
    worker.start()
    results["training in the worker"] = latencies(model, worker)
    base = results["idle (baseline)"]
    print(f"trainer {args.trainer}; single-record predict latency, ms")
    for name, ms in results.items():
        p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
        print(
            f"{name:24s} n={len(ms):6d}  p50 {p50:7.3f}  p99 {p99:7.3f}  "
            f"p99 / baseline {p99 / np.percentile(base, 99):6.2f}x"
        )


if __name__ == "__main__":
    main()

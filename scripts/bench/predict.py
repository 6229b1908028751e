"""Benchmark: single-row prediction through the real server against the in-process floor.

The floor is ONNX Runtime scoring one encoded row in this process (and encode + score). Then
single-row requests go through the appliance's API under uvicorn (its own process, with an
unlimited API key) at concurrency 1, 8 and 32: throughput, p50, p99, and each against the floor.

    python scripts/bench/predict.py [--seconds 3] [--trees 300] [--workdir /tmp/bench-predict]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import Server, bench_arguments, bench_home, predict_requests, run_load, sample_records


def floor_us(home_dir: Path, records: list[dict]) -> tuple[float, float]:
    """Microseconds per one-row ONNX Runtime call, and per encode + call, in process."""
    from appliance.home import Home
    from appliance.serving.models import load_production

    with Home(home_dir) as home:
        model = load_production(home, "fraud")
    rows = [model.encode([r]) for r in records]
    for x in rows[:200]:
        model.run(x)
    started = time.perf_counter()
    for x in rows:
        model.run(x)
    run = (time.perf_counter() - started) / len(rows) * 1e6
    started = time.perf_counter()
    for r in records:
        model.run(model.encode([r]))
    return run, (time.perf_counter() - started) / len(records) * 1e6


def main() -> None:
    parser = bench_arguments(__doc__, 3.0)
    args = parser.parse_args()
    home_dir = bench_home(args)
    records = sample_records()
    run_us, encode_run_us = floor_us(home_dir, records)
    print(
        f"floor (in process, one row): ONNX Runtime {run_us:.1f} µs; encode + ONNX Runtime {encode_run_us:.1f} µs "
        f"= {1e6 / encode_run_us:,.0f} rows/s on one core"
    )
    requests = predict_requests(home_dir, records)
    with Server("appliance.serving.app:create_app", home_dir) as server:
        for c in (1, 8, 32):
            result, _ = run_load(server.port, requests, c, args.seconds)
            print(
                result.line(f"HTTP single row c={c}")
                + f"   {result.per_second * encode_run_us / 1e6:.3f}× floor throughput, "
                f"p50 {result.p50_ms * 1000 / encode_run_us:.0f}× floor time",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Reliability under load: 60 s at concurrency 32 through the full serving path.

Checks: no 5xx; every successful answer's request id has its row in the prediction log (read
after the server stopped on SIGTERM, which flushes the log); the server's memory (RSS, its
writer process's included) grows under 10 % from the end of warm-up to the end of the run.

    python scripts/bench/reliability.py [--seconds 60] [--concurrency 32] [--workdir DIR]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
import psutil
from load import Server, bench_arguments, bench_home, predict_requests, run_load, sample_records

from appliance.layout import Layout

WARMUP_S = 5.0


def main() -> int:
    parser = bench_arguments(__doc__, 60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    home_dir = bench_home(args)
    requests = predict_requests(home_dir, sample_records())
    log_path = Layout(home_dir).predictions_db
    for suffix in ("", "-wal", "-shm"):
        log_path.with_name(log_path.name + suffix).unlink(missing_ok=True)
    rss: list[float] = []
    with Server("appliance.serving.app:create_app", home_dir) as server:
        process = psutil.Process(server.pid)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                measured = [process, *process.children(recursive=True)]  # the log's writer process too
                rss.append(sum(p.memory_info().rss for p in measured) / 2**20)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        result, answers = run_load(
            server.port, requests, args.concurrency, args.seconds, warmup=WARMUP_S, keep_answers=True
        )
        stop.set()
        sampler.join()
    ids = {msgspec.json.decode(a)["request_id"] for a in answers}
    from storage.prediction_log import PredictionStore

    store = PredictionStore(log_path)
    logged = {r[0] for r in store.conn.execute("SELECT request_id FROM predictions")}
    missing = ids - logged
    server_errors = sum(n for status, n in result.statuses.items() if status >= 500)
    after_warmup = [m for i, m in enumerate(rss) if i + 1 >= WARMUP_S]
    growth = (after_warmup[-1] / after_warmup[0] - 1) if len(after_warmup) >= 2 else float("nan")
    print(result.line(f"{args.seconds:g} s at c={args.concurrency}") + f"   ({time.monotonic() - started:.0f} s wall)")
    print(f"statuses {result.statuses}; 5xx: {server_errors}")
    print(f"successful answers {len(ids)}; logged rows {store.count()}; answers without a log row: {len(missing)}")
    print(
        f"server RSS {after_warmup[0]:.0f} MiB after warm-up → {after_warmup[-1]:.0f} MiB at the end "
        f"(growth {growth:+.1%}; peak {max(rss):.0f} MiB)"
    )
    passed = server_errors == 0 and not missing and growth < 0.10
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

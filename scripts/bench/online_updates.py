"""Benchmark: the prediction log writer's added cost of keeping the online store current, per event.

Materializes the sample's history (5,000 users), then replays its live rows as logged prediction rows
in writer-sized batches through (a) the prediction log's own append (the baseline: what the writer
thread already does per row) and (b) ``OnlineUpdater.apply`` (merge the events into the touched
entities' tail points, trim, recompute their rows: SQL in one transaction per batch). Both run on the
server's writer thread; SQLite runs without the GIL, so most of (b)'s CPU time does not hold up the
event loop (the serve benchmark prices that). CPU and wall time per event.

    python scripts/bench/online_updates.py [--events 20000] [--batch 200] [--workdir /tmp/bench-online]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import polars as pl  # noqa: E402

from appliance.config import bundled_spec_path  # noqa: E402
from appliance.features.online import materialize  # noqa: E402
from appliance.features.online_updates import OnlineUpdater  # noqa: E402
from appliance.serving.prediction_log import PredictionLog  # noqa: E402
from appliance.spec import load_spec  # noqa: E402
from storage.online_store import OnlineStore  # noqa: E402
from storage.prediction_log import PredictionStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200, help="rows per writer batch (default 200)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-online"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    spec = load_spec(bundled_spec_path())
    history = pl.read_parquet(spec.resolve(spec.data.source))
    live = pl.read_parquet(spec.resolve(spec.data.live)).sort("event_time").head(args.events)
    fields = [spec.features.entity_key, *(f.name for f in spec.features.request)]
    rows = []
    for i, event in enumerate(live.iter_rows(named=True)):
        record = {n: event[n] for n in fields} | {"event_time": event["event_time"].isoformat()}
        rows.append((f"r{i}", 0, "fraud", 1, "production", None, time.time(), record["event_time"],
                     record["user_id"], record, 0.5, 0, 1.0, 200))
    batches = [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)]

    started = time.perf_counter()
    materialize(OnlineStore(args.workdir / "online.db"), "fraud", spec.features, history, None)
    print(f"materialize with tails: {time.perf_counter() - started:.2f} s for {history.height:,} history rows")

    log = PredictionLog(args.workdir / "predictions.db")  # its writer: the baseline's code path
    log.close()
    store = PredictionStore(args.workdir / "predictions.db")
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        log._write(store, [(True, row) for row in batch])
    log_cpu, log_wall = time.process_time() - cpu, time.perf_counter() - wall

    updater = OnlineUpdater(OnlineStore(args.workdir / "online.db"))
    updater.follow({"fraud": [spec.features]})
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        updater.apply(batch)
    up_cpu, up_wall = time.process_time() - cpu, time.perf_counter() - wall
    assert updater.errors == 0 and updater.stale == 0

    n = len(rows)
    print(f"{n:,} events in batches of {args.batch}; {updater.updated:,} online rows written")
    print(f"prediction log append (baseline)   CPU {log_cpu / n * 1e6:7.1f} µs/event   wall {log_wall / n * 1e6:7.1f} µs/event")
    print(f"online update                      CPU {up_cpu / n * 1e6:7.1f} µs/event   wall {up_wall / n * 1e6:7.1f} µs/event")
    print(f"online update / log append: CPU {up_cpu / log_cpu:.2f}×, wall {up_wall / log_wall:.2f}×")


if __name__ == "__main__":
    main()

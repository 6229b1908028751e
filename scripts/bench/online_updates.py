"""Benchmark: the prediction log writer's added cost of keeping the online store current, per event,
and what the writer costs a busy event loop in the server's process.

Materializes the sample's history (5,000 users), then replays its live rows as logged prediction rows
in writer-sized batches through (a) the prediction log's own append (the baseline: what the writer
already does per row) and (b) ``OnlineUpdater.apply`` (merge the events into the touched entities'
tail points, trim, recompute their rows: SQL in one transaction per batch). CPU and wall time per event.

SQLite runs without the GIL, but every statement step hands the GIL over and takes it back, and a
busy event loop in the same process waits at each handover. So the second part runs a stand-in for
the event loop (Python stretches of ~30 µs between calls that release the GIL) beside the whole
writer (append and online update) on a thread of the loop's process, as it ran before, and beside the
prediction log as it runs now, handing batches to its writer process; it prints what the loop lost, in
µs of its progress per event. The ratio is the gain of the writer process.

    python scripts/bench/online_updates.py [--events 20000] [--batch 200] [--workdir /tmp/bench-online]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import polars as pl

from appliance.config import bundled_spec_path
from appliance.features.online import materialize, update_targets
from appliance.features.online_updates import OnlineUpdater
from appliance.layout import Layout
from appliance.serving.log_writer import Batch, Follow, LogWriter
from appliance.serving.prediction_log import PredictionLog
from appliance.spec import load_spec
from storage.online_store import OnlineStore
from storage.prediction_log import PredictionStore

ROUNDS = 5  # of the busy-loop measurement, which is noisy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200, help="rows per writer batch (default 200)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-online"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    layout = Layout(args.workdir)  # the two databases as a data directory holds them
    spec = load_spec(bundled_spec_path())
    history = pl.read_parquet(spec.resolve(spec.data.source))
    live = pl.read_parquet(spec.resolve(spec.data.live)).sort("event_time").head(args.events)
    fields = [spec.features.entity_key, *(f.name for f in spec.features.request)]
    rows = []
    for i, event in enumerate(live.iter_rows(named=True)):
        record = {n: event[n] for n in fields} | {"event_time": event["event_time"].isoformat()}
        rows.append(
            (
                f"r{i}",
                0,
                "fraud",
                1,
                "production",
                None,
                time.time(),
                record["event_time"],
                record["user_id"],
                record,
                0.5,
                0,
                1.0,
                200,
            )
        )
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]

    started = time.perf_counter()
    materialize(OnlineStore(layout.online_db), "fraud", spec.features, history, None)
    print(f"materialize with tails: {time.perf_counter() - started:.2f} s for {history.height:,} history rows")

    PredictionLog(layout.predictions_db).close()  # created and migrated
    appender = LogWriter(PredictionStore(layout.predictions_db), None)  # the writer without updates
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        appender.handle(Batch(batch, []))
    log_cpu, log_wall = time.process_time() - cpu, time.perf_counter() - wall

    updater = OnlineUpdater(OnlineStore(layout.online_db))
    updater.follow({"fraud": update_targets("fraud", [spec.features])})
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        updater.apply(batch)
    up_cpu, up_wall = time.process_time() - cpu, time.perf_counter() - wall
    assert updater.errors == 0 and updater.stale == 0

    n = len(rows)
    print(f"{n:,} events in batches of {args.batch}; {updater.updated:,} online rows written")
    print(
        f"prediction log append (baseline)   CPU {log_cpu / n * 1e6:7.1f} µs/event   "
        f"wall {log_wall / n * 1e6:7.1f} µs/event"
    )
    print(
        f"online update                      CPU {up_cpu / n * 1e6:7.1f} µs/event   "
        f"wall {up_wall / n * 1e6:7.1f} µs/event"
    )
    print(f"online update / log append: CPU {up_cpu / log_cpu:.2f}×, wall {up_wall / log_wall:.2f}×")

    print(
        f"\nbeside a busy event loop: its progress lost per event (GIL handovers and the GIL held), "
        f"median of {ROUNDS} interleaved rounds"
    )
    targets = {"fraud": update_targets("fraud", [spec.features])}
    writer = LogWriter(PredictionStore(layout.predictions_db), OnlineUpdater(OnlineStore(layout.online_db)))
    writer.handle(Follow(targets))
    log = PredictionLog(layout.predictions_db, online=layout.online_db, batch_rows=args.batch)
    log.follow(targets)
    cases = (
        ("writer on a thread (before)", lambda renamed: on_a_thread(writer, renamed)),
        ("writer process (now)", lambda renamed: through_the_log(log, renamed)),
    )
    lost: dict[str, list[float]] = {label: [] for label, _ in cases}
    for round_ in range(ROUNDS):
        for k, (label, write) in enumerate(cases if round_ % 2 == 0 else cases[::-1]):
            renamed = [[(f"{round_}.{k}.{row[0]}", *row[1:]) for row in batch] for batch in batches]
            lost[label].append(loop_loss(lambda: write(renamed)) / n * 1e6)  # noqa: B023 (run here, in this iteration)
    log.close()
    assert log.write_errors == 0 and log.online_errors == 0
    for label, values in lost.items():
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"{label:<28} {statistics.median(values):6.1f} µs/event   (rounds: {rounds})")
    thread, process = (statistics.median(v) for v in lost.values())
    print(f"writer process / writer thread: {process / thread:.2f}× the loop's loss")


def busy_loop(seconds: float) -> int:
    """An event loop's shape: Python stretches of ~30 µs, each ended by a call that releases the GIL."""
    done, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(400):
            done += 1
        time.sleep(0)
    return done


def on_a_thread(writer: LogWriter, batches: list[list[tuple]]) -> threading.Thread:
    """The writer as it ran before: a thread of the loop's process appending and updating each batch."""
    thread = threading.Thread(target=lambda: [writer.handle(Batch(batch, [])) for batch in batches])
    thread.start()
    return thread


def through_the_log(log: PredictionLog, batches: list[list[tuple]]) -> threading.Thread:
    """The prediction log as it runs now: rows queued, handed in batches to its writer process."""
    for batch in batches:
        for row in batch:
            log.record(row)
    thread = threading.Thread(target=log.flush, args=(600,))  # done when the writer has written them all
    thread.start()
    return thread


def loop_loss(start) -> float:
    """Seconds of a busy loop's progress lost while ``start()``'s thread runs (best of 3 baselines)."""
    rate = max(busy_loop(0.5) for _ in range(3)) / 0.5
    started = time.perf_counter()
    writer = start()
    done = 0
    while writer.is_alive():
        done += busy_loop(0.02)
    seconds = time.perf_counter() - started
    return max(0.0, seconds - done / rate)


if __name__ == "__main__":
    main()

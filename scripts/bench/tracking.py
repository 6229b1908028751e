"""10,000 `run.log_metric` calls against a bare sqlite3 `executemany` of the same rows, in the same run.

    python scripts/bench/tracking.py [--points 10000] [--repeat 5]

Both write into a fresh tracking.db with the same schema (and index); the tracked side includes
opening nothing but the run's own writes and its final flush. Prints the best of N for each and the ratio.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance import tracking
from appliance.layout import Layout
from storage.database import connect
from storage.tracking_schema import MIGRATIONS


def tracked(root: Path, points: int) -> float:
    run = tracking.start_run(model="bench", home=root)
    started = time.perf_counter()
    for step in range(points):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.store.flush()
    elapsed = time.perf_counter() - started
    run.finish()
    return elapsed


def bare(root: Path, points: int) -> float:
    conn = connect(Layout(root).tracking_db, MIGRATIONS)
    conn.execute(
        "INSERT INTO runs (id, model, name, kind, status, started_at) VALUES ('r', 'bench', 'b', 'b', 'running', 0)"
    )
    started = time.perf_counter()
    rows = [("r", "loss", step, 1.0 / (step + 1), time.time()) for step in range(points)]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO metrics (run_id, name, step, value, at) VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == points
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    t_tracked, t_bare = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            t_tracked.append(tracked(Path(a), args.points))
            t_bare.append(bare(Path(b), args.points))
            with sqlite3.connect(Layout(a).tracking_db) as check:
                assert check.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == args.points
    best_tracked, best_bare = min(t_tracked), min(t_bare)
    print(f"sqlite3 {sqlite3.sqlite_version}, {args.points:,} points, best of {args.repeat}")
    print(f"bare executemany   {best_bare * 1e3:8.2f} ms  ({best_bare / args.points * 1e6:.2f} µs/point)")
    print(f"run.log_metric     {best_tracked * 1e3:8.2f} ms  ({best_tracked / args.points * 1e6:.2f} µs/point)")
    print(f"ratio log_metric / executemany: {best_tracked / best_bare:.2f}x")


if __name__ == "__main__":
    main()

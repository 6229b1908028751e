"""Benchmark: a monitor run's peak memory and time over a big prediction log, and what the log may hold.

Trains the bundled sample once (60 trees, in ``--workdir``), then for each case copies that data
directory, writes ``--rows`` prediction rows into its log the way the server's writer does (the live
file's records cycled over its 15 event days, a third of them labelled), and runs the monitor job in a
child process of its own: its peak resident memory (``ru_maxrss``) and wall time are the run's alone.

- ``log``: the rows alone;
- ``log + strays``: the same rows, plus a few written before the event-time horizon and the logged
  fields were bounded: two requests dated year 1 and 9999 (read back as 0001 and 9999 by the log),
  and extra fields sent once as text and once as an object, one named like monitoring's own ``_score``.
  A monitor run before the bounds built a window per day between them, or failed to read the log.

Run from the repository root (on a checkout under test, copy it there first):

    .venv/bin/python scripts/bench/monitor_memory.py [--rows 1000000] [--workdir /tmp/bench-monitor]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import polars as pl

from appliance.config import bundled_spec_path
from appliance.home import Home
from appliance.layout import Layout
from appliance.spec import load_spec
from appliance.training.pipeline import train
from storage.prediction_log import PredictionStore

ROOT = Path(__file__).resolve().parents[2]
BATCH = 50_000
# The child: one monitor run, as the scheduler's job runs it (without the alert engine), reporting its rows.
RUN = """
import sys, time
sys.path.insert(0, {root!r})
from appliance.home import Home
from appliance.monitoring.monitor import monitor
started = time.perf_counter()
with Home({home!r}) as home:
    report = monitor(home, "fraud")
print(report.windows, report.rows, round(time.perf_counter() - started, 1))
"""


def trained_home(workdir: Path) -> Path:
    """The sample trained once (fewer trees than the bundled spec: the model's quality is not measured)."""
    home_root = workdir / "trained"
    if (home_root / "metadata.db").exists():
        return home_root
    spec_dir = workdir / "spec"
    spec_dir.mkdir(parents=True, exist_ok=True)
    for data in bundled_spec_path().parent.iterdir():
        if data.suffix in (".parquet", ".toml") and data.name != "fraud.toml" and not (spec_dir / data.name).exists():
            (spec_dir / data.name).symlink_to(data)
    (spec_dir / "fraud.toml").write_text(
        bundled_spec_path().read_text().replace("num_boost_round = 300", "num_boost_round = 60")
    )
    with Home(home_root) as home:
        spec = load_spec(spec_dir / "fraud.toml")
        home.add_model(spec)
        train(home, spec)
        home.registry.promote("fraud", 1)
    return home_root


def write_log(root: Path, rows: int, strays: bool) -> None:
    """``rows`` logged predictions of version 1, a third labelled, as the server's log writer stores them."""
    spec = load_spec(bundled_spec_path())
    fields = [spec.features.entity_key, *(f.name for f in spec.features.request)]
    live = pl.read_parquet(spec.resolve(spec.data.live)).sort("event_time")
    texts = live["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_list()
    records = live.select(fields).to_dicts()
    outcomes = live[spec.target.column].to_list()
    rng = np.random.default_rng(1)
    store = PredictionStore(Layout(root).predictions_db)
    try:
        received = 1.80e9
        for first in range(0, rows, BATCH):
            batch, feedback = [], []
            for i in range(first, min(first + BATCH, rows)):
                j = i % len(records)
                record = {**records[j], "event_time": texts[j]}
                rid = f"r{i // 4:x}"
                p = float(rng.random() * 0.1)
                batch.append(
                    (
                        rid,
                        i % 4,
                        "fraud",
                        1,
                        "production",
                        None,
                        received + i * 1e-3,
                        texts[j],
                        record["user_id"],
                        json.dumps(record),
                        p,
                        int(p >= 0.5),
                        0.4,
                        200,
                        None,
                        None,
                    )
                )
                if i % 3 == 0:
                    feedback.append((rid, i % 4, float(outcomes[j])))
            store.append(batch)
            store.attach_feedback("fraud", feedback)
        if strays:
            odd = [
                ("year-1", "0001-01-01T00:00:00Z", {}),
                ("year-9999", "9999-12-31T00:00:00Z", {}),
                ("text", texts[0], {"note": "plain text"}),
                ("object", texts[1], {"note": {"nested": [1, 2]}}),
                ("internal", texts[2], {"_score": {"x": 1}}),
            ]
            store.append(
                [
                    (
                        rid,
                        0,
                        "fraud",
                        1,
                        "production",
                        None,
                        received,
                        at,
                        records[0]["user_id"],
                        json.dumps({**records[0], "event_time": at, **extra}),
                        0.01,
                        0,
                        0.4,
                        200,
                        None,
                        None,
                    )
                    for rid, at, extra in odd
                ]
            )
    finally:
        store.close()


def monitor_in_child(root: Path) -> tuple[str, float, str]:
    """(windows and result rows, peak RSS in MiB, error) of one monitor run in a fresh process."""
    child = subprocess.Popen(
        [sys.executable, "-c", RUN.format(root=str(ROOT), home=str(root))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    out, err = child.stdout.read(), child.stderr.read()
    error = "" if status == 0 else (err.strip().splitlines() or ["?"])[-1][:90]
    return out.strip(), usage.ru_maxrss / 1024, error


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-monitor"))
    parser.add_argument("--cases", default="log,log + strays", help="comma-separated: log, log + strays")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    source = trained_home(args.workdir)
    print(f"trained home ready in {time.perf_counter() - started:.0f} s; code under test: {ROOT}")
    print(f"{'case':<16}{'log rows':>11}{'windows rows secs':>22}{'peak RSS MiB':>14}  error")
    for case in args.cases.split(","):
        root = args.workdir / "run"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(source, root)
        write_log(root, args.rows, strays=case == "log + strays")
        outcome, rss, error = monitor_in_child(root)
        print(f"{case:<16}{args.rows:>11,}{outcome:>22}{rss:>14,.0f}  {error}")


if __name__ == "__main__":
    main()

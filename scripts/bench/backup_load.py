"""How a database backup behaves while the prediction log is written as fast as one writer can commit.

    .venv/bin/python scripts/bench/backup_load.py [--mb 50 200] [--deadline 60]

A writer process appends one prediction row and one shadow row per transaction (the log's own
``PredictionStore.append``) in a loop, request ids counting up, while predictions.db (pre-filled
to the given size) is copied three ways: SQLite's online backup in steps of 4,096 pages (what
`appliance backup` did: each commit by another connection restarts it), the online backup in one
step (one read transaction over the whole file), and ``VACUUM INTO``; then as `appliance backup`
copies it now (``storage.backup.backup_database``: one step, then a page check of the copy). Per method: whether it
finished before the deadline, how long it took, how many restarts it went through, the writer's
commits during it and its slowest commit (does the copy hold writers up?), and whether the copy
is one instant (both tables hold the same ids, and the ids have no gap).

Goal: the backup finishes in a time that grows with the file, not with the write rate, and the
writer's slowest commit during it stays of the order of its slowest commit without one.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from storage.backup import backup_database
from storage.prediction_log import PredictionStore
from tests.conftest import log_extent

FEATURES = (
    '{"amount": 97.95, "merchant_category": "online_retail", "hour": 0, "is_foreign": false, '
    '"note": "' + "x" * 400 + '"}'
)


def rows(first: int, count: int) -> tuple[list[tuple], list[tuple]]:
    """Prediction rows (PREDICTION_COLUMNS order) and shadow rows (SHADOW_COLUMNS) for request ids
    first … first + count - 1."""
    now = time.time()
    ids = [f"{i:012d}" for i in range(first, first + count)]
    predictions = [
        (rid, 0, "m", 1, "production", 1, now, None, rid[-3:], FEATURES, 0.5, 0, 1.0, 200, None, None) for rid in ids
    ]
    shadow = [(rid, 0, 1, 2, 0.5, 0, 1.0, None, None) for rid in ids]
    return predictions, shadow


def fill(path: Path, megabytes: int) -> int:
    store = PredictionStore(path)
    n = 0
    while (
        path.stat().st_size
        + (path.with_name(path.name + "-wal").stat().st_size if path.with_name(path.name + "-wal").exists() else 0)
        < megabytes * 1e6
    ):
        store.append(*rows(n, 5000))
        n += 5000
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.conn.close()
    return n


def write_forever(path: str, first: int, stop, counts, slowest) -> None:
    """Commit one prediction and one shadow row per transaction until told to stop."""
    store = PredictionStore(Path(path))
    i = first
    while not stop.is_set():
        began = time.perf_counter()
        store.append(*rows(i, 1))
        slowest.value = max(slowest.value, time.perf_counter() - began)
        i += 1
        counts.value = i - first


def stepped(source: Path, target: Path, deadline: float) -> tuple[bool, int]:
    restarts, last = 0, None

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal restarts, last
        if last is not None and remaining > last:
            restarts += 1
        last = remaining
        if time.monotonic() > deadline:
            raise TimeoutError

    src, dst = sqlite3.connect(f"file:{source}?mode=ro", uri=True), sqlite3.connect(target)
    try:
        src.backup(dst, pages=4096, progress=progress)
        return True, restarts
    except TimeoutError:
        return False, restarts
    finally:
        src.close()
        dst.close()


def one_step(source: Path, target: Path, deadline: float) -> tuple[bool, int]:
    src, dst = sqlite3.connect(f"file:{source}?mode=ro", uri=True), sqlite3.connect(target)
    try:
        src.backup(dst)
        return True, 0
    finally:
        src.close()
        dst.close()


def vacuum_into(source: Path, target: Path, deadline: float) -> tuple[bool, int]:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        src.execute("VACUUM INTO ?", (str(target),))
        return True, 0
    finally:
        src.close()


def appliance_backup(source: Path, target: Path, deadline: float) -> tuple[bool, int]:
    backup_database(source, target)
    return True, 0


def one_instant(copy: Path) -> str:
    predictions, first, last, shadow = log_extent(copy)
    whole = predictions == shadow and last - first + 1 == predictions
    return f"yes ({predictions:,} rows)" if whole else f"NO: {predictions:,} predictions, {shadow:,} shadow"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[50, 200], help="sizes of predictions.db")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds a backup may take")
    args = parser.parse_args()
    print(f"SQLite {sqlite3.sqlite_version}; deadline {args.deadline:g} s\n")
    print(
        f"{'size':>7}  {'method':<25} {'finished':>8} {'seconds':>8} {'restarts':>8} {'commits':>8} "
        f"{'slowest commit':>14}  one instant"
    )
    for mb in args.mb:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "predictions.db"
            filled = fill(db, mb)
            stop, counts, slowest = mp.Event(), mp.Value("q", 0), mp.Value("d", 0.0)
            writer = mp.Process(target=write_forever, args=(str(db), filled, stop, counts, slowest))
            writer.start()
            time.sleep(2.0)
            alone = (slowest.value, counts.value / 2.0)
            print(
                f"{mb:>5}MB  {'(writer alone, 2 s)':<25} {'':>8} {'':>8} {'':>8} {int(alone[1]):>6}/s "
                f"{alone[0] * 1e3:>11.1f} ms"
            )
            try:
                for name, method in (
                    ("online backup, steps", stepped),
                    ("online backup, 1 step", one_step),
                    ("VACUUM INTO", vacuum_into),
                    ("appliance (1 step+check)", appliance_backup),
                ):
                    target = Path(tmp) / f"copy-{name.replace(' ', '')}.db"
                    before, slowest.value = counts.value, 0.0
                    began = time.monotonic()
                    finished, restarts = method(db, target, began + args.deadline)
                    took = time.monotonic() - began
                    commits = counts.value - before
                    instant = one_instant(target) if finished else "-"
                    print(
                        f"{mb:>5}MB  {name:<25} {'yes' if finished else 'NO':>8} {took:>8.1f} {restarts:>8} "
                        f"{commits:>8,} {slowest.value * 1e3:>11.1f} ms  {instant}"
                    )
            finally:
                stop.set()
                writer.join()


if __name__ == "__main__":
    main()

"""Benchmark: completing and encoding ONE request record, the predict handler's per-request work.

Times ``LoadedModel.encode([record])`` (online completion, then the record encoder) for sample
records, in process; the completion against the vectorized batch path fed the same records one
at a time (what every request took before ``complete_one``), and everything against one call over
all the records at once, per record. The encoder has one path for any count: its before/after
figures come from running this script at the older commit as well.

    python scripts/bench/complete.py [--count 2000] [--rounds 5] [--workdir /tmp/bench-complete]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import bench_arguments, bench_home, sample_records


def per_record_us(work, records: list, rounds: int) -> float:
    """The best of ``rounds`` passes over the records, in CPU microseconds per record (this process's
    CPU time: the machine may be shared)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for r in records:
            work(r)
        best = min(best, time.process_time() - started)
    return best / len(records) * 1e6


def main() -> None:
    parser = bench_arguments(__doc__, 0.0)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from appliance.home import Home
    from appliance.serving.models import load_production

    home_dir = bench_home(args)
    records = sample_records(args.count)
    with Home(home_dir) as home:
        model = load_production(home, "fraud")
    features, encoder = model.features, model.encoder
    # The vectorized path, fed one-record lists: what every request took before complete_one.
    # (Run at an older commit, where it does not exist, the bench times complete() in its place.)
    batch = getattr(features, "_complete_batch", features.complete)

    single = per_record_us(lambda r: model.encode([r]), records, args.rounds)
    through_batch = per_record_us(lambda r: encoder.encode(batch([r])), records, args.rounds)
    complete = per_record_us(lambda r: features.complete([r]), records, args.rounds)
    complete_batch = per_record_us(lambda r: batch([r]), records, args.rounds)
    completed = [features.complete([r]) for r in records]
    encode = per_record_us(encoder.encode, completed, args.rounds)
    started = time.process_time()
    encoder.encode(features.complete(records))
    whole = (time.process_time() - started) / len(records) * 1e6

    print(f"{len(records)} sample records, best of {args.rounds} passes, CPU µs per record")
    print(f"LoadedModel.encode([record])           {single:7.1f} µs")
    print(f"  with the batch path's completion     {through_batch:7.1f} µs   ratio {through_batch / single:.2f}×")
    print(f"complete([record])                     {complete:7.1f} µs")
    print(f"  batch path, one-record list          {complete_batch:7.1f} µs   ratio {complete_batch / complete:.2f}×")
    print(f"RecordEncoder.encode([completed])      {encode:7.1f} µs")
    print(f"encode(complete(all {len(records)} at once))     {whole:7.1f} µs per record")


if __name__ == "__main__":
    main()

"""The all-features-together alarm (PCA reconstruction error) at any volume: how often clean windows alert.

Generated data unlike the sample: drift_volume.py's five features (a log-normal number, Zipf integer
codes, 30 Zipf categories, a 0/1 flag typed integer, a rare boolean) plus a pair drawn correlated
(``basket_value``, log-normal money, and ``items``, an integer count, correlation 0.8 on the log scale).
Each trial draws a fresh reference (small: 500 rows, large: 50,000) spread over ten days, as the
model's held-out evaluation window is, and windows of 200 (``min_window_rows``), 1k, 10k and 100k rows
from three populations:

- clean: the reference's own distribution; any alert is a false alarm (the target: at most
  ``drift.false_alarm_rate``, 1 %);
- tiny shift: drift_volume.py's change nobody should be paged for (numbers ×1.02, 0.5 % of rows moved to
  another code or category, the flags' rates +2 % of themselves; the pair ×1.02 too);
- correlation break: the pair drawn independent, every feature's marginal distribution unchanged: what
  no per-feature statistic can see and multivariate drift exists for; it should alert.

Per cell: the share of windows that alert with the rule now (``estimation.reconstruction_drift``: five
fold fits on the numbers' reference shares, alerting past their out-of-sample mean plus the larger of a
5 % rise and the chance bound at the window's rows) and with the rule before (NannyML's own: one fit on
the whole reference, alerting past the mean of its daily reference chunks + 3 standard deviations, run
here on the same windows), and the median clean window's error and threshold under each. Run from the
repository root:

    .venv/bin/python scripts/bench/reconstruction_alarms.py [--trials 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import polars as pl
from drift_volume import DAY_US, START, frame_of, generate
from drift_volume import FEATURES as VOLUME_FEATURES

from appliance.monitoring.estimation import nannyml_strings, reconstruction_drift
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature
from appliance.spec.monitoring import MonitoringSection

FEATURES = [*VOLUME_FEATURES, Feature("basket_value", "float"), Feature("items", "integer")]
RULES = MonitoringSection()
WINDOW_SIZES = (RULES.min_window_rows, 1_000, 10_000, 100_000)
REFERENCE_SIZES = (500, 50_000)
REFERENCE_DAYS = 10
SCENARIOS = ("clean", "tiny shift", "correlation break")
ROWS_PER_CELL = 60_000  # windows per trial and scenario: as many as fit this many rows, 3 to 40
CLEAN_WINDOWS = 2  # times as many clean windows: their share is the stated rate, and small
CORRELATION = 0.8


def rows_of(rows: int, scenario: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    columns = generate(rows, "tiny shift" if scenario == "tiny shift" else "clean", rng)
    scale = 1.02 if scenario == "tiny shift" else 1.0
    first, noise = rng.standard_normal(rows), rng.standard_normal(rows)
    second = noise if scenario == "correlation break" else CORRELATION * first + np.sqrt(1 - CORRELATION**2) * noise
    columns["basket_value"] = np.round(np.exp(3 + 0.6 * first) * scale, 2)
    columns["items"] = np.round(np.exp(1.2 + 0.5 * second) * scale).astype(np.int64)
    return columns


def reference_of(rows: int, rng: np.random.Generator) -> pl.DataFrame:
    """Clean rows spread evenly over REFERENCE_DAYS days."""
    day = np.arange(rows) * REFERENCE_DAYS // rows
    times = pl.Series("event_time", (START.timestamp() * 1e6 - (REFERENCE_DAYS - day) * DAY_US).astype(np.int64))
    return pl.DataFrame({"event_time": times.cast(pl.Datetime("us", "UTC")), **rows_of(rows, "clean", rng)})


def before(reference: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """The rule before: NannyML's calculator fitted on the whole reference, chunked by day, with its own alert."""
    import nannyml
    import pandas as pd

    def daily(rows: pl.DataFrame) -> pd.DataFrame:
        out = rows.with_columns(pl.col("event_time").dt.truncate("1d").dt.replace_time_zone(None)).to_pandas()
        for f in FEATURES:
            if f.type in ("category", "boolean"):
                out[f.name] = out[f.name].astype(str).astype("category")
        return out

    calculator = nannyml.DataReconstructionDriftCalculator(
        column_names=[f.name for f in FEATURES], timestamp_column_name="event_time", chunk_period="h"
    )
    with nannyml_strings():
        table = calculator.fit(daily(reference)).calculate(daily(frame)).filter(period="analysis").to_df()
    return pl.DataFrame(
        {
            "error": table[("reconstruction_error", "value")].to_numpy(),
            "threshold": table[("reconstruction_error", "upper_threshold")].to_numpy(dtype=np.float64),
            "alert": table[("reconstruction_error", "alert")].to_numpy(dtype=bool),
        }
    )


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description="False and true alarms of the all-features-together check.")
    parser.add_argument("--trials", type=int, default=3, help="references drawn per reference size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    parts = []
    for reference_rows in REFERENCE_SIZES:
        for _ in range(args.trials):
            reference = reference_of(reference_rows, rng)
            for window_rows in WINDOW_SIZES:
                for scenario in SCENARIOS:
                    windows = max(3, min(40, ROWS_PER_CELL // window_rows)) * (
                        CLEAN_WINDOWS if scenario == "clean" else 1
                    )
                    frame = frame_of(rows_of(window_rows * windows, scenario, rng), window_rows)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # NannyML warns about pandas internals on every call
                        now = reconstruction_drift(
                            reference, frame, EventWindows(frame, "event_time", "1d"), "event_time", FEATURES, RULES
                        )
                        old = before(reference, frame)
                    parts.append(
                        pl.DataFrame(
                            {
                                "error": now["reconstruction_error"],
                                "threshold": now["threshold"],
                                "alert": now["alert"],
                                "old_error": old["error"],
                                "old_threshold": old["threshold"],
                                "old_alert": old["alert"],
                            }
                        ).with_columns(
                            reference=pl.lit(reference_rows),
                            window=pl.lit(window_rows),
                            scenario=pl.lit(scenario),
                        )
                    )
    results = pl.concat(parts)
    print(
        f"{args.trials} references per size, {len(FEATURES)} features, {time.perf_counter() - started:.0f} s; "
        f"default [monitoring]: false_alarm_rate {RULES.drift.false_alarm_rate}, "
        f"reconstruction_error floor {RULES.drift.reconstruction_error} (relative)\n"
    )
    print("share of windows that alert: now (before: NannyML's band on the whole-reference fit)")
    cells = results.group_by("reference", "window", "scenario").agg(
        pl.col("alert").mean(), pl.col("old_alert").mean(), pl.len().alias("n")
    )
    levels = (
        results.filter(scenario="clean")
        .group_by("reference", "window")
        .agg(pl.col("error", "old_error", "threshold", "old_threshold").median())
    )
    header = f"{'window rows':>11s} " + " ".join(f"{s:>19s}" for s in SCENARIOS)
    header += f" {'clean windows':>13s}  {'median clean error, threshold: now':>34s} {'(before)':>15s}"
    for reference_rows in REFERENCE_SIZES:
        print(f"\nreference {reference_rows:,} rows\n{header}")
        for window_rows in WINDOW_SIZES:
            shares, counts = [], []
            for scenario in SCENARIOS:
                row = cells.filter(reference=reference_rows, window=window_rows, scenario=scenario).row(0, named=True)
                shares.append(f"{row['alert']:7.1%} ({row['old_alert']:6.1%})")
                counts.append(row["n"])
            level = levels.filter(reference=reference_rows, window=window_rows).row(0, named=True)
            print(
                f"{window_rows:11,d} "
                + " ".join(f"{s:>19s}" for s in shares)
                + f" {counts[0]:13d}  {level['error']:27.3f}, {level['threshold']:.3f}"
                + f"  ({level['old_error']:.3f}, {level['old_threshold']:.3f})"
            )
    clean = results.filter(scenario="clean")
    print(
        f"\nall clean windows: {clean['alert'].mean():.2%} alert now, {clean['old_alert'].mean():.2%} before "
        f"({clean.height} windows)"
    )


if __name__ == "__main__":
    main()

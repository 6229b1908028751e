"""Drift alarms at any volume: how often clean windows alert, and how often drifted ones do, by window size.

Generated data unlike the sample, five features of the kinds a spec declares: a skewed number
(``dwell_seconds``, log-normal with a heavy tail), integer codes (``region``, 1-40 with Zipf shares,
typed integer so it is judged as a number, ties and all), a categorical string (``plan``, 30 values
with Zipf shares, the rarest 0.4 %), a 0/1 flag typed integer (``opted_in``, 8 % ones) and a rare
boolean (``trial``, 3 % true). Each trial draws a fresh reference (small: 500 rows, large: 50,000)
and windows of 200 (``min_window_rows``), 500, 1k, 3k, 10k and 100k rows from three populations:

- clean: the reference's own distribution; any alert is a false alarm;
- tiny shift: a change nobody should be paged for (numbers ×1.02, 0.5 % of rows moved to another code
  or category, the flags' rates +2 % of themselves): it should alert no more often than clean data, at
  any size;
- drift: a shift worth an alert (numbers ×1.25, 8 % of rows moved to the codes and categories that were
  rare, the flags' rates doubled).

Per cell: the share of feature-windows that alert, with the default ``[monitoring]`` section (the
larger of each statistic's effect-size floor and its chance bound at 1 % per feature-window) and with
the floors alone (the fixed thresholds before the chance bound); and, for clean windows, the share of
windows where the default ``drift`` alert rule (drift score > 0.3 on any feature) would fire. Run from
the repository root:

    .venv/bin/python scripts/bench/drift_volume.py [--trials 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import polars as pl

from appliance.monitoring.feature_drift import ReferenceProfile, feature_drift
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature
from appliance.spec.monitoring import MonitoringSection

FEATURES = [
    Feature("dwell_seconds", "float"),
    Feature("region", "integer"),
    Feature("plan", "category"),
    Feature("opted_in", "integer"),
    Feature("trial", "boolean"),
]
RULES = MonitoringSection()
WINDOW_SIZES = (RULES.min_window_rows, 500, 1_000, 3_000, 10_000, 100_000)
REFERENCE_SIZES = (500, 50_000)
SCENARIOS = ("clean", "tiny shift", "drift")
ROWS_PER_CELL = 600_000  # windows per trial: as many as fit this many rows, 3 to 400
START = datetime(2027, 3, 1, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000

REGION_SHARES = 1 / np.arange(1, 41) ** 1.1
REGION_SHARES /= REGION_SHARES.sum()
PLANS = np.array([f"plan-{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(30)])
PLAN_SHARES = 1 / np.arange(1, 31) ** 1.3
PLAN_SHARES /= PLAN_SHARES.sum()
# How each population departs from the clean one: number scale, share of rows moved to a code or
# category drawn from the rarest third, and the flags' rate multiplier.
SHIFTS = {"clean": (1.0, 0.0, 1.0), "tiny shift": (1.02, 0.005, 1.02), "drift": (1.25, 0.08, 2.0)}


def generate(rows: int, scenario: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    scale, moved, rate = SHIFTS[scenario]
    region = rng.choice(np.arange(1, 41), rows, p=REGION_SHARES)
    plan = rng.choice(PLANS, rows, p=PLAN_SHARES)
    move = rng.random(rows) < moved
    region[move] = rng.integers(27, 41, int(move.sum()))
    plan[move] = rng.choice(PLANS[20:], int(move.sum()))
    return {
        "dwell_seconds": np.round(rng.lognormal(2.0, 1.4, rows) * scale, 1),
        "region": region.astype(np.int64),
        "plan": plan,
        "opted_in": (rng.random(rows) < 0.08 * rate).astype(np.int64),
        "trial": rng.random(rows) < 0.03 * rate,
    }


def frame_of(columns: dict[str, np.ndarray], window_rows: int) -> pl.DataFrame:
    """The rows as a frame whose event times put each run of ``window_rows`` rows in its own day."""
    rows = len(columns["region"])
    day = np.arange(rows) // window_rows
    times = pl.Series("event_time", START.timestamp() * 1e6 + day * DAY_US, dtype=pl.Int64).cast(
        pl.Datetime("us", "UTC")
    )
    return pl.DataFrame({"event_time": times, **columns})


def checked(profile: ReferenceProfile, frame: pl.DataFrame) -> pl.DataFrame:
    """The drift rows, each with whether it passed its floor alone and its drift score."""
    out = feature_drift(profile, frame, EventWindows(frame, "event_time", "1d"), RULES)
    floors = pl.col("method").replace_strict(
        {m: getattr(RULES.drift, m) for m in ("psi", "ks", "jensen_shannon", "chi2")}
    )
    return out.with_columns(
        fixed=pl.col("value") > floors,
        score=pl.when("alert").then(1 - pl.col("threshold") / pl.col("value")).otherwise(0.0),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20, help="references drawn per reference size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    parts, thresholds = [], []
    for reference_rows in REFERENCE_SIZES:
        for trial in range(args.trials):
            reference = pl.DataFrame(generate(reference_rows, "clean", rng))
            profile = ReferenceProfile.fit(reference, FEATURES, RULES.psi_bins)
            for window_rows in WINDOW_SIZES:
                windows = max(3, min(400, ROWS_PER_CELL // window_rows))
                for scenario in SCENARIOS:
                    frame = frame_of(generate(window_rows * windows, scenario, rng), window_rows)
                    rows = checked(profile, frame).with_columns(
                        reference=pl.lit(reference_rows),
                        window=pl.lit(window_rows),
                        scenario=pl.lit(scenario),
                        trial=pl.lit(trial),
                    )
                    if scenario == "clean":
                        thresholds.append(rows.select("reference", "window", "feature", "method", "threshold"))
                    parts.append(
                        rows.group_by("reference", "window", "scenario", "trial", "window_start", "feature").agg(
                            pl.col("alert").any(), pl.col("fixed").any(), pl.col("score").max()
                        )
                    )
    days = pl.concat(parts)
    elapsed = time.perf_counter() - started

    by_cell = days.group_by("reference", "window", "scenario", "feature").agg(
        pl.col("alert").mean(), pl.col("fixed").mean(), pl.len().alias("n")
    )
    rule = (
        days.filter(scenario="clean")
        .group_by("reference", "window", "trial", "window_start")
        .agg((pl.col("score").max() > 0.3).alias("fires"))
        .group_by("reference", "window")
        .agg(pl.col("fires").mean().alias("drift_rule"), pl.len().alias("windows"))
    )
    print(
        f"{args.trials} references per size, {len(FEATURES)} features, {time.perf_counter() - started:.0f} s "
        f"({elapsed:.0f} s computing); default [monitoring]: false_alarm_rate {RULES.drift.false_alarm_rate}, "
        f"floors PSI {RULES.drift.psi}, KS {RULES.drift.ks}, JS {RULES.drift.jensen_shannon}\n"
    )
    print("share of feature-windows that alert: now (floors alone, the fixed thresholds before)")
    for reference_rows in REFERENCE_SIZES:
        print(f"\nreference {reference_rows:,} rows")
        header = (
            f"{'window rows':>11s} {'feature':14s} "
            + " ".join(f"{s:>17s}" for s in SCENARIOS)
            + f" {'feature-windows':>15s}"
        )
        print(header)
        for window_rows in WINDOW_SIZES:
            for feature in [f.name for f in FEATURES]:
                cells = []
                for scenario in SCENARIOS:
                    row = by_cell.filter(
                        reference=reference_rows, window=window_rows, scenario=scenario, feature=feature
                    ).row(0, named=True)
                    cells.append(f"{row['alert']:7.1%} ({row['fixed']:6.1%})")
                print(f"{window_rows:11,d} {feature:14s} " + " ".join(f"{c:>17s}" for c in cells) + f" {row['n']:15d}")
            drift_rule = rule.filter(reference=reference_rows, window=window_rows).row(0, named=True)
            print(
                f"{'':11s} {'drift rule':14s} {drift_rule['drift_rule']:7.1%} of {drift_rule['windows']} clean "
                f"windows (any feature's drift score > 0.3)"
            )
    print("\nmedian threshold of the clean windows (the larger of floor and chance bound)")
    medians = (
        pl.concat(thresholds)
        .group_by("reference", "window", "feature", "method")
        .agg(pl.col("threshold").median())
        .with_columns(check=pl.col("feature") + ":" + pl.col("method"))
        .pivot(on="window", index=["reference", "check"], values="threshold", sort_columns=True)
        .sort("reference", "check")
        .with_columns(pl.col(pl.Float64).round(4))
    )
    with pl.Config(
        tbl_rows=40, tbl_cols=12, tbl_width_chars=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True
    ):
        print(medians)
    clean = by_cell.filter(scenario="clean")
    worst = clean.sort("alert", descending=True).row(0, named=True)
    print(
        f"\nworst clean cell: {worst['alert']:.2%} of {worst['n']} feature-windows "
        f"({round(worst['alert'] * worst['n'])} alerts; {worst['feature']}, {worst['window']:,}-row windows, "
        f"{worst['reference']:,}-row reference), the largest of {clean.height} cells; all clean "
        f"feature-windows: {days.filter(scenario='clean')['alert'].mean():.2%} (floors alone: "
        f"{days.filter(scenario='clean')['fixed'].mean():.2%})"
    )


if __name__ == "__main__":
    main()

"""Windows are compared with the reference's whole windows: a part-window at its end biases every feature
with a daily cycle (found after the demo's retrain: its reference ran 1.25 days, and the hour of day drifted
on every whole live day after)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from appliance.monitoring.reference import whole_windows


def _hour_psi(expected: pl.DataFrame, actual: pl.DataFrame) -> float:
    """PSI of the hour of day, 24 bins, computed here from its definition."""
    e, a = (np.bincount(f["hour"].to_numpy(), minlength=24) / f.height for f in (expected, actual))
    return float(np.sum((a - e) * np.log(a / e)))


def _cycle(start: datetime, hours: float, seed: int = 0) -> pl.DataFrame:
    """Rows every ~10 s from ``start`` with their hour of day, an integer code and a 0/1 flag."""
    rng = np.random.default_rng(seed)
    n = int(hours * 360)
    at = [start + timedelta(seconds=10 * i + float(rng.uniform(0, 5))) for i in range(n)]
    return pl.DataFrame(
        {
            "placed": pl.Series(at, dtype=pl.Datetime("us", "UTC")),
            "hour": [t.hour for t in at],
            "store": rng.integers(1, 40, n),
            "promo": rng.integers(0, 2, n),
        }
    )


def test_a_reference_cut_inside_a_day_ends_at_the_day_before() -> None:
    rows = _cycle(datetime(2026, 3, 2, tzinfo=UTC), hours=30)  # a day and six hours
    whole = whole_windows(rows, "placed", "1d")
    assert whole["placed"].max() < datetime(2026, 3, 3, tzinfo=UTC) <= rows["placed"].max()
    day = _cycle(datetime(2026, 3, 9, tzinfo=UTC), hours=24, seed=1)
    as_cut, trimmed = (_hour_psi(r, day) for r in (rows, whole))
    assert trimmed < 0.01 < 0.05 < as_cut  # the part-day's six hours counted twice drift every whole day


def test_shorter_windows_and_short_or_timeless_references_are_kept_as_they_are() -> None:
    rows = _cycle(datetime(2026, 3, 2, 10, tzinfo=UTC), hours=7)  # 10:00 to 17:00
    assert whole_windows(rows, "placed", "12h").height == rows.height  # the cut at 12:00 would keep 2 of 7 hours
    assert whole_windows(rows, "placed", "1h")["placed"].max() < datetime(2026, 3, 2, 17, tzinfo=UTC)
    no_time = rows.drop("placed")
    assert whole_windows(no_time, "placed", "1d").equals(no_time)
    as_text = rows.with_columns(pl.col("placed").dt.to_string())
    assert whole_windows(as_text, "placed", "1d").equals(as_text)

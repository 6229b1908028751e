"""All features together (PCA reconstruction error): its threshold per window, on generated data unlike the sample.

Five features of other kinds and names than the sample's (a gamma-skewed number, integer shard codes,
string tiers, a flag) plus a pair drawn correlated: a clean window stays under its threshold whatever its
size, a window where the pair's correlation breaks but neither marginal moves alerts, the threshold falls
toward the floor as windows grow, and a reference too small to fold gives no threshold at all.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from appliance.monitoring.estimation import reconstruction_drift
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature
from appliance.spec.monitoring import DriftThresholds, MonitoringSection

FEATURES = [
    Feature("latency_ms", "float"),
    Feature("shard", "integer"),
    Feature("tier", "category"),
    Feature("cached", "boolean"),
    Feature("width", "float"),
    Feature("height", "integer"),
]
TIERS = np.array(["bronze", "silver", "gold", "platinum", "staff"])
START = datetime(2031, 6, 1, tzinfo=UTC)
RULES = MonitoringSection()


def rows_of(rows: int, rng: np.random.Generator, correlated: bool = True) -> dict[str, np.ndarray]:
    first, noise = rng.standard_normal(rows), rng.standard_normal(rows)
    second = 0.85 * first + np.sqrt(1 - 0.85**2) * noise if correlated else noise
    return {
        "latency_ms": rng.gamma(0.8, 120.0, rows),
        "shard": rng.choice(np.arange(100, 116), rows, p=np.arange(16, 0, -1) / 136),
        "tier": rng.choice(TIERS, rows, p=[0.5, 0.3, 0.15, 0.04, 0.01]),
        "cached": rng.random(rows) < 0.3,
        "width": np.exp(4 + 0.4 * first),
        "height": np.round(np.exp(3 + 0.4 * second)).astype(np.int64),
    }


def days_of(sizes: list[int], rng: np.random.Generator, correlated: list[bool] | None = None) -> pl.DataFrame:
    """One day per size, the rows of day i spread over its 24 hours (0 rows: a day with no traffic)."""
    parts = []
    for day, size in enumerate(sizes):
        if size == 0:
            continue
        hours = np.sort(rng.integers(0, 24, size))
        times = [START + timedelta(days=day, hours=int(h)) for h in hours]
        keep = True if correlated is None else correlated[day]
        parts.append(pl.DataFrame({"event_time": times, **rows_of(size, rng, keep)}))
    return pl.concat(parts)


def reference_of(rows: int, rng: np.random.Generator) -> pl.DataFrame:
    """The reference: ten days before START."""
    frame = days_of([rows // 10] * 10, rng)
    return frame.with_columns(pl.col("event_time") - timedelta(days=10))


def drift(reference: pl.DataFrame, frame: pl.DataFrame, rules: MonitoringSection = RULES) -> pl.DataFrame:
    windows = EventWindows(frame, "event_time", "1d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NannyML warns about pandas internals
        return reconstruction_drift(reference, frame, windows, "event_time", FEATURES, rules)


@pytest.fixture(scope="module")
def reference() -> pl.DataFrame:
    return reference_of(5_000, np.random.default_rng(19))


def test_clean_windows_of_any_size_stay_under_their_threshold(reference):
    sizes = [200] * 30 + [2_000] * 8 + [20_000] * 2
    out = drift(reference, days_of(sizes, np.random.default_rng(20)))
    assert out["rows"].to_list() == sizes
    assert out["reconstruction_error"].null_count() == 0 and out["threshold"].null_count() == 0
    # 1 % of clean windows alert by chance: at most one of these 40, the seed fixed.
    assert out["alert"].sum() <= 1
    assert (
        out["alert"].to_list()
        == ((out["reconstruction_error"] > out["threshold"]) & (out["rows"] >= RULES.min_window_rows)).to_list()
    )


def test_a_correlation_break_alerts_though_no_feature_moves(reference):
    sizes = [2_000, 2_000, 2_000, 2_000, 100]
    out = drift(reference, days_of(sizes, np.random.default_rng(21), correlated=[True, False, False, True, False]))
    assert out["alert"].to_list() == [False, True, True, False, False]  # the last: under min_window_rows
    broken, kept = out["reconstruction_error"][1], out["reconstruction_error"][0]
    assert broken > kept * (1 + RULES.drift.reconstruction_error)


def test_threshold_falls_to_the_floor_as_windows_grow(reference):
    out = drift(reference, days_of([200, 500, 0, 40_000], np.random.default_rng(22)))
    threshold = out["threshold"].to_list()
    assert threshold[0] > threshold[1] > threshold[3]
    # A day without traffic is judged at the floor alone; a 40,000-row window is too (chance is smaller there).
    assert out["rows"][2] == 0 and out["reconstruction_error"][2] is None and not out["alert"][2]
    assert threshold[3] == pytest.approx(threshold[2])
    mean = threshold[2] / (1 + RULES.drift.reconstruction_error)  # the out-of-sample mean
    higher = MonitoringSection(drift=DriftThresholds(reconstruction_error=0.2))
    assert drift(reference, days_of([40_000], np.random.default_rng(22)), higher)["threshold"][0] == pytest.approx(
        mean * 1.2
    )


def test_a_reference_too_small_to_fold_gives_no_threshold():
    rng = np.random.default_rng(23)
    out = drift(reference_of(240, rng), days_of([500, 500], rng, correlated=[True, False]))
    assert out["rows"].to_list() == [500, 500]
    assert out["threshold"].null_count() == 2 and out["reconstruction_error"].null_count() == 2
    assert not out["alert"].any()

"""Drift statistics against scipy and hand-worked cases, and windows in event time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from appliance.errors import InvalidInput
from appliance.monitoring import drift
from appliance.monitoring.feature_drift import ReferenceProfile, feature_drift
from appliance.monitoring.prediction_drift import prediction_drift, prediction_drift_by_window
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature
from appliance.spec.monitoring import MonitoringSection


@pytest.mark.parametrize("seed", range(6))
def test_ks_equals_scipy_with_ties_and_unequal_sizes(seed):
    rng = np.random.default_rng(seed)
    reference = np.round(rng.normal(0, 1, rng.integers(1, 3000)), seed % 3)  # rounding makes ties
    n_windows = 7
    values = np.round(rng.normal(rng.normal(0, 0.3), rng.uniform(0.5, 2), 5000), (seed + 1) % 3)
    window = rng.integers(-1, n_windows - 1, values.size)  # -1: in no window; the last window stays empty
    values[rng.random(values.size) < 0.01] = np.nan  # nulls are dropped, as scipy sees them
    got = drift.ks(reference, _sorted_windows(values, window, n_windows))
    for w in range(n_windows - 1):
        mine = values[(window == w) & ~np.isnan(values)]
        assert got[w] == pytest.approx(stats.ks_2samp(reference, mine).statistic, abs=1e-9)
    assert np.isnan(got[-1])


def test_ks_of_tiny_and_identical_samples():
    def one_window(reference, values):
        return drift.ks(np.array(reference), _sorted_windows(np.array(values), np.zeros(len(values), dtype=int), 1))[0]

    assert one_window([1.0], [1.0]) == 0.0
    assert one_window([1.0, 2.0], [3.0]) == 1.0
    same = [1.0, 1, 2, 2, 2, 3]
    assert one_window(same, same) == 0.0


def test_bin_counts_of_sorted_windows_equal_counting_each_row():
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(0, 1, 5000), 1)  # ties on the edges too
    values[rng.random(values.size) < 0.02] = np.nan
    window = rng.integers(-1, 5, values.size)  # window 5 stays empty
    edges = drift.quantile_edges(values, 4)
    assert np.isin(edges, values).all()  # rows on an edge: the side of a tie matters
    expected = drift.counts_by_window(drift.bin_codes(values, edges), window, 6, edges.size + 1)
    got = drift.bin_counts(_sorted_windows(values, window, 6), edges)
    assert got.tolist() == expected.tolist()
    assert got[5].tolist() == [0] * (edges.size + 1)


def test_psi_hand_worked():
    # Reference 50/30/20 → q = (0.5, 0.3, 0.2); window 40/40/20 → p = (0.4, 0.4, 0.2).
    # PSI = (0.4-0.5)·ln(0.4/0.5) + (0.4-0.3)·ln(0.4/0.3) + 0
    #     = (-0.1)(-0.2231436) + (0.1)(0.2876821) = 0.0223144 + 0.0287682 = 0.0510826
    assert drift.psi(np.array([50, 30, 20]), np.array([40, 40, 20]))[0] == pytest.approx(0.0510826, abs=1e-7)
    # An empty window bin counts as the documented 1e-4 share, so the value stays finite:
    # (1e-4 - 0.5)·ln(1e-4/0.5) + (0.6-0.3)·ln(0.6/0.3) + (0.4-0.2)·ln(0.4/0.2)
    # = (-0.4999)(-8.5171932) + 0.3·0.6931472 + 0.2·0.6931472 = 4.2577449 + 0.2079442 + 0.1386294
    assert drift.PSI_EMPTY_BIN_SHARE == 1e-4
    assert drift.psi(np.array([50, 30, 20]), np.array([0, 60, 40]))[0] == pytest.approx(4.6043185, abs=1e-6)


def test_continuous_psi_bins_on_reference_quantiles():
    # Reference 1..10 in 2 bins: the median 5.5 splits it 5/5. Window 1,2,3,6,7,8,9,10 → 3/5 of 8.
    # PSI = (0.375-0.5)·ln(0.375/0.5) + (0.625-0.5)·ln(0.625/0.5) = 0.0359603 + 0.0278929 = 0.0638532
    reference = pl.DataFrame({"x": [float(v) for v in range(1, 11)]})
    profile = ReferenceProfile.fit(reference, [Feature("x", "float")], bins=2)
    assert profile.features[0].edges.tolist() == [5.5]
    frame = _timed({"x": [1.0, 2, 3, 6, 7, 8, 9, 10]})
    out = feature_drift(profile, frame, EventWindows(frame, "event_time", "1d"), MonitoringSection())
    assert out.filter(method="psi")["value"].item() == pytest.approx(0.0638532, abs=1e-7)


def test_categorical_statistics_match_scipy():
    rng = np.random.default_rng(4)
    reference = rng.integers(0, 6, 5000)
    values = rng.choice(6, 4000, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    window = rng.integers(0, 3, values.size)
    ref_counts = np.bincount(reference, minlength=7)  # code 6: "unseen", empty in both
    counts = drift.counts_by_window(values, window, 3, 7)
    js, chi2, v = (
        drift.jensen_shannon(ref_counts, counts),
        drift.chi2(ref_counts, counts),
        drift.cramers_v(ref_counts, counts),
    )
    for w in range(3):
        table = np.vstack([ref_counts[:6], counts[w, :6]])
        expected = stats.chi2_contingency(table, correction=False).statistic
        assert chi2[w] == pytest.approx(expected, rel=1e-12)
        assert v[w] == pytest.approx(stats.contingency.association(table, method="cramer"), rel=1e-12)
        assert js[w] == pytest.approx(jensenshannon(ref_counts, counts[w], base=2), abs=1e-12)


def test_categories_unseen_rare_and_null():
    # "r" has fewer rows than RARE_CATEGORY_ROWS: it shares the last bin with values the reference never had.
    reference = pl.DataFrame(
        {"c": ["a"] * 20 + ["b"] * 10 + ["r"] * 3 + [None] * 7, "flag": [True] * 30 + [False] * 10}
    )
    profile = ReferenceProfile.fit(reference, [Feature("c", "category"), Feature("flag", "boolean")])
    c, flag = profile.features
    assert c.categories == ["a", "b"] and c.counts.tolist() == [20, 10, 3] and c.rows == 33
    assert flag.categories == ["false", "true"] and flag.counts.tolist() == [10, 30, 0]
    assert c.codes(pl.Series(["b", "zz", None, "a", "r"])).tolist() == [1, 2, -1, 0, 2]


def test_windows_follow_event_time_not_arrival():
    day = datetime(2026, 10, 16, tzinfo=UTC)
    # Arrival order is shuffled and all "now"; a late event lands in its own (earlier) window.
    frame = pl.DataFrame(
        {
            "event_time": [
                day + timedelta(days=2, hours=1),
                day + timedelta(hours=23, minutes=59),
                day,
                day + timedelta(days=2, hours=23),
            ],
            "received_at": [datetime.now(UTC)] * 4,
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )
    windows = EventWindows(frame, "event_time", "1d")
    assert windows.starts.to_list() == [day, day + timedelta(days=1), day + timedelta(days=2)]
    assert windows.code.tolist() == [2, 0, 0, 2]
    assert windows.rows().tolist() == [2, 0, 2]  # the empty day is still a window
    bounded = EventWindows(frame, "event_time", "1d", start=day + timedelta(days=1), end=day + timedelta(days=3))
    assert bounded.code.tolist() == [1, -1, -1, 1]
    assert EventWindows(frame, "event_time", "12h").count == 6


def test_drift_frame_is_tidy_and_alerts_on_effect_size():
    rng = np.random.default_rng(0)
    reference = pl.DataFrame({"x": rng.normal(0, 1, 20_000), "c": rng.choice(["a", "b", "c"], 20_000)})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    same = pl.DataFrame(
        {
            "event_time": [start + timedelta(seconds=30 * i) for i in range(2880)],
            "x": rng.normal(0, 1, 2880),
            "c": rng.choice(["a", "b", "c"], 2880),
        }
    )
    shifted = same.with_columns(pl.col("event_time") + timedelta(days=1), pl.col("x") + 0.5, pl.lit("a").alias("c"))
    frame = pl.concat([same, shifted])
    features = [Feature("x", "float"), Feature("c", "category")]
    rules = MonitoringSection(categorical_methods=["psi", "jensen_shannon", "chi2"])
    out = feature_drift(
        ReferenceProfile.fit(reference, features), frame, EventWindows(frame, "event_time", "1d"), rules
    )
    assert out.columns == ["window_start", "feature", "method", "value", "threshold", "rows", "alert"]
    assert out.height == 2 * (2 + 3)
    alerts = out.group_by(pl.col("window_start").dt.day()).agg(pl.col("alert").sum()).sort("window_start")
    assert alerts["alert"].to_list() == [0, 5]
    assert out.filter(method="ks")["threshold"].to_list() == [rules.drift.ks] * 2


def test_small_windows_never_alert():
    reference = pl.DataFrame({"x": np.arange(1000, dtype=float)})
    frame = _timed({"x": [5000.0] * 50})
    out = feature_drift(
        ReferenceProfile.fit(reference, [Feature("x", "float")]),
        frame,
        EventWindows(frame, "event_time", "1d"),
        MonitoringSection(min_window_rows=100),
    )
    assert out.filter(method="ks")["value"].item() == 1.0
    assert not out["alert"].any()


def test_prediction_drift():
    rng = np.random.default_rng(1)
    reference = rng.beta(1, 20, 10_000)
    same = prediction_drift(reference, reference, 0.5)
    assert same["psi"] == 0 and same["positive_rate_change"] == 0
    higher = prediction_drift(reference, np.clip(reference * 3, 0, 1), 0.2)
    assert higher["psi"] > 0.5 and higher["positive_rate"] > higher["reference_positive_rate"]
    frame = _timed({"score": np.concatenate([reference[:3000], np.clip(reference[3000:6000] * 3, 0, 1)])}, per_day=3000)
    out = prediction_drift_by_window(
        reference, frame, "score", EventWindows(frame, "event_time", "1d"), 0.2, MonitoringSection(min_window_rows=100)
    )
    psi = out.filter(method="psi").sort("window_start")
    assert psi["alert"].to_list() == [False, True]
    assert psi["value"][1] == pytest.approx(higher["psi"], rel=0.5)


def test_monitoring_section_from_toml_shape():
    section = msgspec.convert({"window": "12h", "drift": {"ks": 0.1}}, MonitoringSection)
    assert section.drift.ks == 0.1 and section.drift.psi == 0.02 and section.window == "12h"
    with pytest.raises(InvalidInput, match=r"monitoring\.window"):
        msgspec.convert({"window": "daily"}, MonitoringSection)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"continuous_methods": ["wasserstein"]}, MonitoringSection)


def _sorted_windows(values: np.ndarray, window: np.ndarray, n_windows: int) -> drift.SortedWindows:
    return drift.SortedWindows.of(values, drift.window_order(window, n_windows))


def _timed(columns: dict, per_day: int | None = None) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=1) / (per_day or n)
    return pl.DataFrame({"event_time": [start + step * i for i in range(n)], **columns})

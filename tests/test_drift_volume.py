"""Drift thresholds that hold at any volume: a clean window alerts on a feature at most at the stated rate,
whether it has 200 rows or 100k and the reference 400 or 30k; a shift under the effect-size floors never
alerts, however many rows show it.

The data are unlike the sample: a skewed amount in another currency, integer store codes, sales channels
as strings with rare ones, a 0/1 membership flag and a rare boolean.
"""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from scipy import stats

from appliance.cli import main
from appliance.config import bundled_spec_path
from appliance.errors import InvalidInput
from appliance.monitoring import drift
from appliance.monitoring.feature_drift import ReferenceProfile, feature_drift
from appliance.monitoring.prediction_drift import prediction_drift_by_window, value_drift_by_window
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature
from appliance.spec.monitoring import DriftThresholds, MonitoringSection

FEATURES = [
    Feature("basket_sek", "float"),
    Feature("store_id", "integer"),
    Feature("channel", "category"),
    Feature("is_member", "integer"),
    Feature("gift_wrap", "boolean"),
]
CHANNELS = np.array([f"ch_{i:02d}" for i in range(25)])
CHANNEL_SHARES = (lambda s: s / s.sum())(1 / np.arange(1, 26) ** 1.4)  # the rarest about 0.5 %
STORE_SHARES = (lambda s: s / s.sum())(1 / np.arange(1, 61) ** 1.1)
START = datetime(2027, 5, 1, tzinfo=UTC)
RULES = MonitoringSection()
FLOORS = {"psi": RULES.drift.psi, "ks": RULES.drift.ks, "jensen_shannon": RULES.drift.jensen_shannon}


def baskets(rows: int, rng: np.random.Generator, scale: float = 1.0, moved: float = 0.0) -> dict[str, np.ndarray]:
    """``rows`` rows; ``scale`` multiplies the amounts and ``moved`` of the rows go to rare stores and channels."""
    store = rng.choice(np.arange(100, 160), rows, p=STORE_SHARES)
    channel = rng.choice(CHANNELS, rows, p=CHANNEL_SHARES)
    move = rng.random(rows) < moved
    store[move] = rng.integers(140, 160, int(move.sum()))
    channel[move] = rng.choice(CHANNELS[15:], int(move.sum()))
    return {
        "basket_sek": np.round(rng.gamma(1.2, 400.0, rows) * scale, 2),
        "store_id": store,
        "channel": channel,
        "is_member": (rng.random(rows) < 0.12).astype(np.int64),
        "gift_wrap": rng.random(rows) < 0.03,
    }


def windowed(columns: dict[str, np.ndarray], window_rows: int) -> pl.DataFrame:
    """The rows as traffic, each run of ``window_rows`` rows on its own event-time day."""
    day = np.arange(len(columns["channel"])) // window_rows
    times = pl.Series(int(START.timestamp() * 1e6) + day * 86_400_000_000).cast(pl.Datetime("us", "UTC"))
    return pl.DataFrame({"ordered_at": times, **columns})


def drift_rows(reference: pl.DataFrame, traffic: pl.DataFrame, rules: MonitoringSection = RULES) -> pl.DataFrame:
    return feature_drift(
        ReferenceProfile.fit(reference, FEATURES, rules.psi_bins),
        traffic,
        EventWindows(traffic, "ordered_at", rules.window),
        rules,
    )


def alert_shares(rows: pl.DataFrame) -> dict[str, tuple[float, float]]:
    """Per feature: the share of windows that alert, and the share that would have past the floors alone."""
    floors = pl.col("method").replace_strict(FLOORS)
    per_window = (
        rows.with_columns(fixed=pl.col("value") > floors)
        .group_by("window_start", "feature")
        .agg(pl.col("alert").any(), pl.col("fixed").any())
    )
    shares = per_window.group_by("feature").agg(pl.col("alert").mean(), pl.col("fixed").mean())
    return {r["feature"]: (r["alert"], r["fixed"]) for r in shares.iter_rows(named=True)}


@pytest.mark.parametrize(
    ("reference_rows", "window_rows", "references", "windows"),
    [(30_000, 200, 1, 400), (30_000, 1_100, 1, 150), (400, 3_000, 30, 10)],
)
def test_clean_windows_alert_at_most_the_stated_rate(reference_rows, window_rows, references, windows):
    rng = np.random.default_rng(window_rows)
    alerting, fixed = [], []
    for _ in range(references):
        # A small reference's own sampling error is shared by every window judged against it: the rate holds
        # over references, so each draws its own.
        reference = pl.DataFrame(baskets(reference_rows, rng))
        shares = alert_shares(drift_rows(reference, windowed(baskets(window_rows * windows, rng), window_rows)))
        alerting.append([shares[f.name][0] for f in FEATURES])
        fixed.append([shares[f.name][1] for f in FEATURES])
    rate = np.mean(alerting, axis=0)
    # 1 % per feature-window is the target; the margin is the binomial noise of this many windows.
    assert (rate <= 0.01 + 2.5 * np.sqrt(0.01 / (references * windows))).all(), dict(zip(FEATURES, rate))
    # The fixed thresholds (the floors alone) alarmed on most of these windows: a skewed amount, store codes
    # and channels with rare values, at 200 or 1,100 rows or against a 400-row reference.
    assert np.mean(fixed, axis=0).max() > 0.2, fixed


def test_a_shift_under_the_floors_never_alerts_however_many_rows_show_it():
    rng = np.random.default_rng(5)
    reference = pl.DataFrame(baskets(30_000, rng))
    trivial = windowed(baskets(300_000, rng, scale=1.03, moved=0.005), 100_000)
    rows = drift_rows(reference, trivial)
    assert not rows["alert"].any()
    # ... though chance alone is below what 100k rows show: a test of "any difference" would alarm.
    ks = rows.filter(feature="basket_sek", method="ks")
    assert (ks["value"] > drift.ks_by_chance(ks["rows"].to_numpy(), 30_000, 0.005)).all()
    real = windowed(baskets(300_000, rng, scale=1.3, moved=0.08), 100_000)
    alerting = alert_shares(drift_rows(reference, real))
    assert all(alerting[f][0] == 1.0 for f in ("basket_sek", "store_id", "channel")), alerting


def test_the_threshold_is_the_floor_or_the_chance_bound_whichever_is_larger():
    rng = np.random.default_rng(9)
    reference = pl.DataFrame(baskets(20_000, rng))
    traffic = pl.concat(
        [
            windowed(baskets(200, rng), 200),
            windowed(baskets(20_000, rng), 20_000).with_columns(pl.col("ordered_at").dt.offset_by("1d")),
        ]
    )
    rows = drift_rows(reference, traffic).sort("window_start")
    for (feature, method), group in rows.group_by("feature", "method"):
        small, large = group["threshold"].to_list()
        floor = FLOORS[method]
        assert small > floor and large >= floor, (feature, method, small, large)
        if method == "ks":
            # Kolmogorov's bound at 0.5 % (the feature's 1 % shared by two statistics).
            assert small == pytest.approx(np.sqrt(np.log(2 / 0.005) / 2 * (1 / 200 + 1 / 20_000)))
            assert large == floor
    stricter = MonitoringSection(drift=DriftThresholds(false_alarm_rate=0.001))
    strict_rows = drift_rows(reference, traffic, stricter).sort("feature", "method", "window_start")
    assert (strict_rows["threshold"] >= rows.sort("feature", "method", "window_start")["threshold"]).all()


@pytest.mark.parametrize(
    ("shares", "reference_rows", "window_rows"),
    [
        ([0.97, 0.03, 0.0], 50_000, 200),  # a rare flag: each count of it is a step of the statistics
        ([0.97, 0.03, 0.0], 500, 1_000),  # a reference smaller than the window
        ([*CHANNEL_SHARES, 0.0], 30_000, 300),  # categories whose expected counts are under one row
        ([*CHANNEL_SHARES, 0.0], 600, 200),
    ],
)
def test_the_simulated_bound_is_exceeded_at_most_its_rate(shares, reference_rows, window_rows):
    """Draw references and clean windows from one distribution: the share of windows past their bound is the
    false-alarm rate, which the chi² approximation (PSI ≈ χ²(k-1)·(1/n + 1/m)) misses several times over."""
    rng = np.random.default_rng(reference_rows + window_rows)
    alpha, references, per_reference = 0.005, 400, 200
    statistics = [drift.psi, drift.jensen_shannon, drift.cramers_v]
    past = []
    for _ in range(references):
        reference = rng.multinomial(reference_rows, shares)
        windows = rng.multinomial(window_rows, shares, size=per_reference)
        bound = drift.by_chance(statistics, reference, np.full(per_reference, window_rows), alpha)
        past.append([np.mean(s(reference, windows) > b) for s, b in zip(statistics, bound)])
    # A small reference's luck is shared by all its windows: the rate is a mean over references.
    rate, noise = np.mean(past, axis=0), np.std(past, axis=0) / np.sqrt(references)
    assert (rate <= alpha + 3 * noise).all(), (rate, noise)


def test_the_ks_bound_is_kolmogorovs_and_safe_for_finite_windows():
    for n in (200, 1_000, 10_000):
        exact = stats.kstwo.isf(0.005, n)  # one window against a known distribution, exactly
        bound = drift.ks_by_chance(np.array([n]), 10**12, 0.005)[0]
        assert exact <= bound <= exact * 1.02


def test_prediction_drift_of_small_windows_is_judged_against_chance():
    rng = np.random.default_rng(3)
    # A binary model's scores, 2.5 % of them over its decision threshold, and a regression model's values.
    reference = rng.beta(0.6, 12, 20_000)
    threshold = float(np.quantile(reference, 0.975))
    traffic = windowed(
        {"channel": np.zeros(200 * 300), "score": rng.beta(0.6, 12, 200 * 300), "eta": rng.gamma(2.0, 9.0, 200 * 300)},
        200,
    )
    windows = EventWindows(traffic, "ordered_at", "1d")
    scores = prediction_drift_by_window(reference, traffic, "score", windows, threshold, RULES)
    values = value_drift_by_window(rng.gamma(2.0, 9.0, 20_000), traffic, "eta", windows, RULES)
    for rows in (scores, values):
        per_window = rows.group_by("window_start").agg(pl.col("alert").any())
        assert per_window["alert"].mean() <= 0.01 + 2.5 * np.sqrt(0.01 / 300), rows.filter("alert")
    change = scores.filter(method="positive_rate_change")
    # The fixed 0.01 alone alarmed on a third or more: a 200-row window's rate varies by 0.011 by chance.
    assert (change["value"] > RULES.prediction.positive_rate_change).mean() > 0.3
    assert (change["threshold"] > 3 * RULES.prediction.positive_rate_change).all()


def test_a_false_alarm_rate_outside_0_1_is_refused(tmp_path: Path):
    with pytest.raises(InvalidInput, match=r"monitoring\.drift\.false_alarm_rate"):
        msgspec.convert({"drift": {"false_alarm_rate": 0}}, MonitoringSection)
    spec = tmp_path / "fraud.toml"
    spec.write_text(bundled_spec_path().read_text() + "\n[monitoring.drift]\nfalse_alarm_rate = 1.5\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--home", str(tmp_path / "home"), "init", "--spec", str(spec)])
    lines = err.getvalue().strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "monitoring.drift.false_alarm_rate 1.5 must be between 0 and 1" in lines[0]
    listed = io.StringIO()
    with contextlib.redirect_stdout(listed):
        main(["--home", str(tmp_path / "home"), "models"])
    assert "no models yet" in listed.getvalue()  # nothing registered

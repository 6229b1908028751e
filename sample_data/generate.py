"""Seeded generator for the bundled card-transaction fraud sample data set.

Run ``python sample_data/generate.py [--out DIR] [--seed N]``; the default
output folder is this script's folder and the default seed is 7.  The same
seed gives byte-identical Parquet files (with the same numpy and polars
versions: the Parquet footer names the polars version that wrote it).

The generative story
--------------------
*Users.*  5,000 card holders.  Each has an account age (as of 2026-09-01;
most accounts are years old, a tail of them are brand new), a home country
(US-heavy), an activity level (lognormal: a few users transact a lot), a
personal spending scale (lognormal, the median ticket of the user) and
personal merchant preferences (a Dirichlet draw around the population mix).
Each user also carries a hidden risk multiplier that no column reveals.

*Legitimate traffic.*  Every UTC day gets a Poisson number of transactions
around ``TX_PER_WEEKDAY`` (fewer on weekends, a little day-to-day noise).  Each
transaction picks a user in proportion to activity, a merchant category from
the user's preferences and a *local* hour from a daytime-heavy daily cycle;
the local hour is turned into the UTC hour with the user's country offset.
The amount is the user's scale times a category factor (travel and jewelry
tickets are bigger than pharmacy ones) times lognormal noise.  A few
percent of legitimate payments are made abroad, far more for travel.

*Fraud (history and clean live days).*  Each transaction is fraudulent with
a probability that rises for young accounts (< 90 days, and to a lesser
extent < 1 year), for some countries and with the hidden user risk; the
base rate is solved for so the overall rate is ``FRAUD_RATE``.  Most
fraudulent transactions follow the "stolen card" pattern: an amount drawn
independently of the victim's usual spending (so amount relative to the
user's own average is a strong signal), night-skewed local hours, mostly
foreign, concentrated in electronics / jewelry / online retail / travel.
A share ``FRAUD_MIMIC_SHARE`` of the fraud instead looks exactly like the
victim's normal behaviour (careful fraudsters, friendly fraud), and a small
share ``LABEL_NOISE`` of legitimate rows is labelled as fraud (chargeback
abuse, mistakes).  Together they keep a model on the raw columns well short
of perfect.

*Drift episode (from 2026-10-20T00:00Z to the end, inside live.parquet).*
(a) Seasonal prices: legitimate amounts are multiplied by
``DRIFT_LEGIT_AMOUNT_FACTOR``.  (b) The fraud pattern changes: the stolen
card pattern drops to ``DRIFT_CLASSIC_FRAUD_SCALE`` of its rate and
fraudsters start *card testing*: bursts of several small ($5-40), daytime,
mostly domestic transactions on one card in digital goods and gaming, a few
minutes apart, hitting users regardless of account age or country.  The
fraud rate rises to about ``DRIFT_FRAUD_RATE``.  A model trained on the
history ranks the new fraud below most legitimate traffic.

Outputs: ``users.parquet``, ``transactions.parquet`` (2026-09-01 ..
2026-10-15, the labelled history) and ``live.parquet`` (2026-10-16 ..
2026-10-30, replayed later through the prediction API).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

# --------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------
START = datetime(2026, 9, 1, tzinfo=UTC)
N_DAYS = 60  # 2026-09-01 .. 2026-10-30 (end exclusive: 2026-10-31)
LIVE_START_DAY = 45  # 2026-10-16: first day of live.parquet
DRIFT_START_DAY = 49  # 2026-10-20: first day of the drift episode
US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000

# --------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------
N_USERS = 5_000
COUNTRIES = ["US", "GB", "DE", "FR", "JP", "CA", "AU"]
COUNTRY_WEIGHTS = [0.42, 0.13, 0.11, 0.09, 0.08, 0.10, 0.07]
COUNTRY_UTC_OFFSET_H = [-5, 0, 1, 1, 9, -5, 10]  # local = UTC + offset
COUNTRY_FRAUD_MULT = [1.0, 1.2, 0.7, 0.9, 0.5, 1.1, 1.6]
MAX_ACCOUNT_AGE_DAYS = 3650
NEW_ACCOUNT_SHARE = 0.10  # accounts younger than YOUNG_ACCOUNT_DAYS
YOUNG_ACCOUNT_DAYS = 90
YOUNG_FRAUD_MULT = 4.0  # account < 90 days
RECENT_ACCOUNT_DAYS = 365
RECENT_FRAUD_MULT = 1.6  # account 90..364 days
USER_ACTIVITY_SIGMA = 0.8  # lognormal sigma of per-user activity
USER_SPEND_MEDIAN = 32.0  # median of the users' median ticket (USD)
USER_SPEND_SIGMA = 0.9  # lognormal sigma of the personal spending scale
USER_PREF_CONCENTRATION = 6.0  # Dirichlet concentration of merchant prefs
USER_HIDDEN_RISK_SIGMA = 0.6  # lognormal sigma of the unobserved risk

# --------------------------------------------------------------------------
# Merchants
# --------------------------------------------------------------------------
CATEGORIES = [
    "grocery",
    "restaurants",
    "fuel",
    "travel",
    "electronics",
    "jewelry",
    "online_retail",
    "gaming",
    "pharmacy",
    "digital_goods",
]
LEGIT_CATEGORY_WEIGHTS = [0.26, 0.18, 0.11, 0.04, 0.04, 0.01, 0.16, 0.05, 0.07, 0.08]
LEGIT_CATEGORY_AMOUNT_FACTOR = [1.6, 1.0, 1.5, 8.0, 6.0, 7.0, 1.8, 0.7, 0.8, 0.35]
FRAUD_CATEGORY_WEIGHTS = [0.04, 0.03, 0.03, 0.15, 0.24, 0.13, 0.22, 0.05, 0.02, 0.09]
CARD_TEST_CATEGORY_WEIGHTS = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.10, 0.35, 0.0, 0.55]

# --------------------------------------------------------------------------
# Volume and daily cycle
# --------------------------------------------------------------------------
TX_PER_WEEKDAY = 3_130  # expected volume of a weekday (UTC)
WEEKEND_VOLUME_FACTOR = 0.85
DAILY_VOLUME_SIGMA = 0.05  # lognormal day-to-day noise on the volume
# Relative activity of legitimate users by local hour 0..23.
LEGIT_LOCAL_HOUR_WEIGHTS = [
    0.20, 0.12, 0.08, 0.06, 0.06, 0.10, 0.25, 0.55, 0.85, 1.00, 1.10, 1.20,
    1.30, 1.25, 1.15, 1.10, 1.15, 1.25, 1.35, 1.30, 1.10, 0.85, 0.60, 0.35,
]  # fmt: skip
# Stolen-card fraud by local hour: flatter, with a night bump.
FRAUD_LOCAL_HOUR_WEIGHTS = [
    1.30, 1.50, 1.60, 1.60, 1.40, 1.00, 0.70, 0.60, 0.60, 0.65, 0.70, 0.70,
    0.70, 0.70, 0.70, 0.70, 0.70, 0.75, 0.80, 0.85, 0.90, 1.00, 1.10, 1.20,
]  # fmt: skip
# Card testing runs in (local) business hours.
CARD_TEST_LOCAL_HOURS = (9, 19)  # [start, end)

# --------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------
LEGIT_AMOUNT_NOISE_SIGMA = 0.65  # per-transaction lognormal noise
FRAUD_AMOUNT_MEDIAN = 180.0  # stolen-card tickets, independent of the user
FRAUD_AMOUNT_SIGMA = 1.0
CARD_TEST_AMOUNT_RANGE = (5.0, 40.0)  # log-uniform
MIN_AMOUNT = 0.50
MAX_AMOUNT = 20_000.0

# --------------------------------------------------------------------------
# Foreign transactions
# --------------------------------------------------------------------------
LEGIT_FOREIGN_P = 0.03
LEGIT_TRAVEL_FOREIGN_P = 0.35
FRAUD_FOREIGN_P = 0.55
CARD_TEST_FOREIGN_P = 0.10

# --------------------------------------------------------------------------
# Fraud rates and overlap
# --------------------------------------------------------------------------
FRAUD_RATE = 0.025  # expected fraud rate outside the drift episode
FRAUD_MIMIC_SHARE = 0.1  # share of fraud that copies the victim's habits
LABEL_NOISE = 0.002  # share of legitimate rows labelled as fraud anyway

# --------------------------------------------------------------------------
# Drift episode (days DRIFT_START_DAY .. N_DAYS-1)
# --------------------------------------------------------------------------
DRIFT_LEGIT_AMOUNT_FACTOR = 1.35
DRIFT_CLASSIC_FRAUD_SCALE = 0.5  # stolen-card fraud continues at this scale
DRIFT_FRAUD_RATE = 0.04  # total fraud rate targeted during the drift
CARD_TEST_BURST_MEAN_EXTRA = 4.0  # burst size = 1 + Poisson(this)
CARD_TEST_GAP_MEAN_S = 150.0  # mean seconds between attempts in a burst

Arrays = dict[str, np.ndarray]

TX_COLUMNS = [
    "transaction_id",
    "event_time",
    "user_id",
    "amount",
    "merchant_category",
    "hour",
    "is_foreign",
    "is_fraud",
]


def _choice_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one category per element of ``rows`` from the row-wise ``probs``."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(rows.shape[0])
    return (u[:, None] > cum[rows]).sum(axis=1)


def _norm(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _make_users(rng: np.random.Generator) -> Arrays:
    n = N_USERS
    country = rng.choice(len(COUNTRIES), size=n, p=_norm(COUNTRY_WEIGHTS))
    young = rng.random(n) < NEW_ACCOUNT_SHARE
    # Older accounts: skewed towards old (Beta(2, 1) on the remaining range).
    old_span = MAX_ACCOUNT_AGE_DAYS - YOUNG_ACCOUNT_DAYS
    old_age = YOUNG_ACCOUNT_DAYS + rng.beta(2.0, 1.0, n) * old_span
    young_age = rng.integers(0, YOUNG_ACCOUNT_DAYS, n)
    age = np.where(young, young_age, np.floor(old_age)).astype(np.int32)
    activity = rng.lognormal(0.0, USER_ACTIVITY_SIGMA, n)
    spend = USER_SPEND_MEDIAN * rng.lognormal(0.0, USER_SPEND_SIGMA, n)
    alpha = USER_PREF_CONCENTRATION * _norm(LEGIT_CATEGORY_WEIGHTS) + 0.05
    prefs = rng.dirichlet(alpha, size=n)
    hidden_risk = rng.lognormal(0.0, USER_HIDDEN_RISK_SIGMA, n)
    age_mult = np.select(
        [age < YOUNG_ACCOUNT_DAYS, age < RECENT_ACCOUNT_DAYS],
        [YOUNG_FRAUD_MULT, RECENT_FRAUD_MULT],
        1.0,
    )
    risk = np.asarray(COUNTRY_FRAUD_MULT)[country] * age_mult * hidden_risk
    return {
        "user_id": np.array([f"u{i:05d}" for i in range(n)]),
        "account_age_days": age,
        "country": country,
        "activity": activity,
        "spend": spend,
        "prefs": prefs,
        "risk": risk,
    }


def _local_to_utc_hour(local_hour: np.ndarray, country: np.ndarray) -> np.ndarray:
    return (local_hour - np.asarray(COUNTRY_UTC_OFFSET_H)[country]) % 24


def _base_transactions(rng: np.random.Generator, users: Arrays) -> Arrays:
    """Legitimate traffic plus stolen-card (and mimic) fraud, all 60 days."""
    days = np.arange(N_DAYS)
    weekday = (days + 1) % 7  # 2026-09-01 is a Tuesday (Mon=0)
    expected = TX_PER_WEEKDAY * np.where(weekday >= 5, WEEKEND_VOLUME_FACTOR, 1.0)
    expected = expected * rng.lognormal(0.0, DAILY_VOLUME_SIGMA, N_DAYS)
    counts = rng.poisson(expected)
    day = np.repeat(days, counts)
    n = day.shape[0]
    drift = day >= DRIFT_START_DAY

    user = rng.choice(N_USERS, size=n, p=users["activity"] / users["activity"].sum())
    country = users["country"][user]

    # Fraud label: base probability solved so that E[p] = FRAUD_RATE.
    risk = users["risk"][user]
    base_p = FRAUD_RATE / risk.mean()
    p_fraud = np.minimum(base_p * risk, 0.9) * np.where(drift, DRIFT_CLASSIC_FRAUD_SCALE, 1.0)
    fraud = rng.random(n) < p_fraud
    mimic = fraud & (rng.random(n) < FRAUD_MIMIC_SHARE)
    classic = fraud & ~mimic  # the "stolen card" pattern
    noise = ~fraud & (rng.random(n) < LABEL_NOISE)

    # Merchant category.
    legit_cat = _choice_rows(rng, users["prefs"], user)
    fraud_cat = rng.choice(len(CATEGORIES), size=n, p=_norm(FRAUD_CATEGORY_WEIGHTS))
    cat = np.where(classic, fraud_cat, legit_cat)

    # Hour: drawn in the user's local time, stored in UTC.
    legit_local = rng.choice(24, size=n, p=_norm(LEGIT_LOCAL_HOUR_WEIGHTS))
    fraud_local = rng.choice(24, size=n, p=_norm(FRAUD_LOCAL_HOUR_WEIGHTS))
    hour = _local_to_utc_hour(np.where(classic, fraud_local, legit_local), country)
    within_hour = rng.integers(0, US_PER_HOUR, n)
    event_us = day * US_PER_DAY + hour * US_PER_HOUR + within_hour

    # Amount.
    legit_amount = (
        users["spend"][user]
        * np.asarray(LEGIT_CATEGORY_AMOUNT_FACTOR)[cat]
        * rng.lognormal(0.0, LEGIT_AMOUNT_NOISE_SIGMA, n)
    )
    legit_amount = legit_amount * np.where(drift, DRIFT_LEGIT_AMOUNT_FACTOR, 1.0)
    fraud_amount = FRAUD_AMOUNT_MEDIAN * rng.lognormal(0.0, FRAUD_AMOUNT_SIGMA, n)
    amount = np.where(classic, fraud_amount, legit_amount)

    # Foreign.
    is_travel = cat == CATEGORIES.index("travel")
    legit_foreign_p = np.where(is_travel, LEGIT_TRAVEL_FOREIGN_P, LEGIT_FOREIGN_P)
    foreign = rng.random(n) < np.where(classic, FRAUD_FOREIGN_P, legit_foreign_p)

    return {
        "event_us": event_us,
        "user": user,
        "amount": amount,
        "cat": cat,
        "hour": hour,
        "foreign": foreign,
        "fraud": fraud | noise,
    }


def _card_testing(rng: np.random.Generator, users: Arrays, day_volume: np.ndarray) -> Arrays:
    """Card-testing bursts during the drift episode.

    ``day_volume[d]`` is the number of base transactions on UTC day ``d``.
    """
    # Stolen-card fraud keeps DRIFT_CLASSIC_FRAUD_SCALE * FRAUD_RATE; card
    # testing tops the rate up to DRIFT_FRAUD_RATE, day by day.
    extra_rate = DRIFT_FRAUD_RATE - DRIFT_CLASSIC_FRAUD_SCALE * FRAUD_RATE
    drift_days = np.arange(DRIFT_START_DAY, N_DAYS)
    target = extra_rate * day_volume[drift_days] / (1.0 - extra_rate)
    bursts_per_day = np.rint(target / (1.0 + CARD_TEST_BURST_MEAN_EXTRA)).astype(np.int64)
    b_day = np.repeat(drift_days, bursts_per_day)
    n_bursts = b_day.shape[0]
    size = 1 + rng.poisson(CARD_TEST_BURST_MEAN_EXTRA, n_bursts)
    b_user = rng.integers(0, N_USERS, n_bursts)  # any card, any age/country
    lo, hi = CARD_TEST_LOCAL_HOURS
    b_local = rng.integers(lo, hi, n_bursts)
    b_start = (
        b_day * US_PER_DAY
        + _local_to_utc_hour(b_local, users["country"][b_user]) * US_PER_HOUR
        + rng.integers(0, US_PER_HOUR, n_bursts)
    )

    burst = np.repeat(np.arange(n_bursts), size)
    n = burst.shape[0]
    first = np.r_[0, np.cumsum(size)[:-1]]
    gaps = rng.exponential(CARD_TEST_GAP_MEAN_S * 1e6, n).astype(np.int64)
    gaps[first] = 0
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], size)
    event_us = b_start[burst] + offset
    user = b_user[burst]
    alo, ahi = CARD_TEST_AMOUNT_RANGE
    amount = np.exp(rng.uniform(np.log(alo), np.log(ahi), n))
    cat = rng.choice(len(CATEGORIES), size=n, p=_norm(CARD_TEST_CATEGORY_WEIGHTS))
    foreign = rng.random(n) < CARD_TEST_FOREIGN_P
    keep = event_us < N_DAYS * US_PER_DAY
    return {
        "event_us": event_us[keep],
        "user": user[keep],
        "amount": amount[keep],
        "cat": cat[keep],
        "hour": (event_us[keep] // US_PER_HOUR) % 24,
        "foreign": foreign[keep],
        "fraud": np.ones(int(keep.sum()), dtype=bool),
    }


def _build_frames(seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    users = _make_users(rng)
    base = _base_transactions(rng, users)
    day_volume = np.bincount(base["event_us"] // US_PER_DAY, minlength=N_DAYS)
    ct = _card_testing(rng, users, day_volume)
    tx = {k: np.concatenate([base[k], ct[k]]) for k in base}

    # Deterministic order: event time, then user, then amount, then origin.
    amount = np.clip(np.round(tx["amount"], 2), MIN_AMOUNT, MAX_AMOUNT)
    order = np.lexsort((np.arange(amount.shape[0]), amount, tx["user"], tx["event_us"]))
    n = order.shape[0]
    start_us = int(START.timestamp() * 1_000_000)

    users_df = pl.DataFrame(
        {
            "user_id": users["user_id"],
            "account_age_days": users["account_age_days"],
            "country": np.asarray(COUNTRIES)[users["country"]],
        },
        schema={"user_id": pl.String, "account_age_days": pl.Int32, "country": pl.String},
    ).sort("user_id")

    tx_df = pl.DataFrame(
        {
            "transaction_id": [f"tx{i:07d}" for i in range(1, n + 1)],
            "event_time": tx["event_us"][order] + start_us,
            "user_id": users["user_id"][tx["user"][order]],
            "amount": amount[order],
            "merchant_category": np.asarray(CATEGORIES)[tx["cat"][order]],
            "hour": tx["hour"][order].astype(np.int32),
            "is_foreign": tx["foreign"][order],
            "is_fraud": tx["fraud"][order].astype(np.int8),
        },
        schema={
            "transaction_id": pl.String,
            "event_time": pl.Int64,
            "user_id": pl.String,
            "amount": pl.Float64,
            "merchant_category": pl.String,
            "hour": pl.Int32,
            "is_foreign": pl.Boolean,
            "is_fraud": pl.Int8,
        },
    ).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))
    if not tx_df["hour"].equals(tx_df["event_time"].dt.hour().cast(pl.Int32), check_names=False):
        raise RuntimeError("hour does not match event_time")

    live_start = START.timestamp() + LIVE_START_DAY * 86_400
    live_start_dt = datetime.fromtimestamp(live_start, tz=UTC)
    history = tx_df.filter(pl.col("event_time") < live_start_dt)
    live = tx_df.filter(pl.col("event_time") >= live_start_dt)
    return users_df, history.select(TX_COLUMNS), live.select(TX_COLUMNS)


def generate(out_dir: Path, seed: int = 7) -> dict[str, Path]:
    """Generate the three Parquet files into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    users_df, history, live = _build_frames(seed)
    paths = {
        "users": out_dir / "users.parquet",
        "transactions": out_dir / "transactions.parquet",
        "live": out_dir / "live.parquet",
    }
    for key, df in (("users", users_df), ("transactions", history), ("live", live)):
        df.write_parquet(paths[key], compression="zstd", statistics=True)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for name, path in generate(args.out, args.seed).items():
        print(f"{name}: {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()

"""The bundled sample data set: reproducible, sane, and within its own contract."""

from __future__ import annotations

import hashlib
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from sample_data.generate import TX_COLUMNS, generate

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
FILES = ("users", "transactions", "live")
UTC = UTC
START = datetime(2026, 9, 1, tzinfo=UTC)
LIVE_START = datetime(2026, 10, 16, tzinfo=UTC)
DRIFT_START = datetime(2026, 10, 20, tzinfo=UTC)
END = datetime(2026, 10, 31, tzinfo=UTC)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("sample"), seed=7)


@pytest.fixture(scope="module")
def users() -> pl.DataFrame:
    return pl.read_parquet(SAMPLE_DIR / "users.parquet")


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    return pl.read_parquet(SAMPLE_DIR / "transactions.parquet")


@pytest.fixture(scope="module")
def live() -> pl.DataFrame:
    return pl.read_parquet(SAMPLE_DIR / "live.parquet")


@pytest.fixture(scope="module")
def contract() -> dict:
    with open(SAMPLE_DIR / "contract.toml", "rb") as fh:
        return tomllib.load(fh)


# ---------------------------------------------------------------- reproducibility


def test_regenerate_same_data(regenerated):
    for name in FILES:
        committed = pl.read_parquet(SAMPLE_DIR / f"{name}.parquet")
        fresh = pl.read_parquet(regenerated[name])
        assert fresh.equals(committed), f"{name}: regenerated data differs from the committed file"


def test_regenerate_byte_identical(regenerated, tmp_path):
    # Byte for byte within one environment (the Parquet footer names the polars that wrote it, so
    # across versions only the data is compared: test_regenerate_same_data).
    again = generate(tmp_path)
    for name in FILES:
        assert _sha256(regenerated[name]) == _sha256(again[name]), name


def test_other_seed_differs(tmp_path):
    paths = generate(tmp_path, seed=8)
    assert _sha256(paths["transactions"]) != _sha256(SAMPLE_DIR / "transactions.parquet")


# ---------------------------------------------------------------- sanity


def test_users(users):
    assert users.columns == ["user_id", "account_age_days", "country"]
    assert users.schema["account_age_days"] == pl.Int32
    assert users.height == 5_000
    assert users["user_id"].is_unique().all()
    assert users["user_id"].is_sorted()
    assert users["user_id"].str.contains(r"^u\d{5}$").all()
    assert users["account_age_days"].min() >= 0 and users["account_age_days"].max() <= 3650
    assert 0.05 < (users["account_age_days"] < 90).mean() < 0.2
    assert set(users["country"].unique()) == {"US", "GB", "DE", "FR", "JP", "CA", "AU"}
    assert users["country"].value_counts()["count"].max() > 1.5 * users.height / 7  # non-uniform


def test_shape_and_dates(history, live, users):
    for df in (history, live):
        assert df.columns == TX_COLUMNS
        assert df.schema["event_time"] == pl.Datetime("us", "UTC")
        assert df["event_time"].is_sorted()
        assert df["transaction_id"].is_sorted()
        assert df["hour"].equals(df["event_time"].dt.hour().cast(pl.Int32), check_names=False)
        assert df["user_id"].is_in(users["user_id"].implode()).all()
    assert history["event_time"].min() >= START
    assert history["event_time"].max() < LIVE_START
    assert live["event_time"].min() >= LIVE_START
    assert live["event_time"].max() < END
    assert history["transaction_id"][-1] < live["transaction_id"][0]
    days_h = history["event_time"].dt.date().n_unique()
    days_l = live["event_time"].dt.date().n_unique()
    assert (days_h, days_l) == (45, 15)
    assert 2_500 < (history.height + live.height) / 60 < 3_500


def test_daily_cycle_and_weekends(history):
    by_hour = history.group_by("hour").len()
    assert by_hour["len"].max() > 2 * by_hour["len"].min()
    daily = history.group_by(pl.col("event_time").dt.date().alias("day")).len()
    weekend = daily.filter(pl.col("day").dt.weekday() >= 6)["len"].mean()
    weekday = daily.filter(pl.col("day").dt.weekday() < 6)["len"].mean()
    assert weekend < weekday


def test_fraud_rates_and_drift(history, live):
    clean_live = live.filter(pl.col("event_time") < DRIFT_START)
    drift = live.filter(pl.col("event_time") >= DRIFT_START)
    assert 0.02 <= history["is_fraud"].mean() <= 0.03
    assert 0.015 <= clean_live["is_fraud"].mean() <= 0.035
    assert 0.035 <= drift["is_fraud"].mean() <= 0.05
    # Seasonal prices: legitimate amounts are higher in the drift episode.
    legit_median = lambda df: df.filter(pl.col("is_fraud") == 0)["amount"].median()  # noqa: E731
    assert legit_median(drift) > 1.2 * legit_median(history)
    # Card testing: drift-era fraud is small, and the stolen-card fraud before it is large.
    fraud_median = lambda df: df.filter(pl.col("is_fraud") == 1)["amount"].median()  # noqa: E731
    assert fraud_median(drift) < 40 < fraud_median(history)


# ---------------------------------------------------------------- contract

_TYPE_CHECKS = {
    "string": lambda dt: dt == pl.String,
    "integer": lambda dt: dt.is_integer(),
    "float": lambda dt: dt.is_float(),
    "boolean": lambda dt: dt == pl.Boolean,
    "timestamp": lambda dt: isinstance(dt, pl.Datetime),
}


def test_contract_shape(contract):
    assert contract["contract"]["name"] == "transactions"
    assert contract["contract"]["event_time"] == "event_time"
    assert [f["name"] for f in contract["fields"]] == TX_COLUMNS
    assert all(f["type"] in _TYPE_CHECKS for f in contract["fields"])
    assert contract["freshness"]["max_staleness"].endswith("h")
    assert contract["volume"]["min_rows_per_day"] > 0


@pytest.mark.parametrize("name", ["transactions", "live"])
def test_rows_pass_contract(contract, name):
    df = pl.read_parquet(SAMPLE_DIR / f"{name}.parquet")
    for field in contract["fields"]:
        col = df[field["name"]]
        assert _TYPE_CHECKS[field["type"]](col.dtype), (field["name"], col.dtype)
        if not field.get("nullable", True):
            assert col.null_count() == 0, field["name"]
        if "min" in field:
            assert col.min() >= field["min"], field["name"]
        if "max" in field:
            assert col.max() <= field["max"], field["name"]
        if "allowed_values" in field:
            assert col.is_in(field["allowed_values"]).all(), field["name"]
        if field.get("unique"):
            assert col.is_unique().all(), field["name"]
    per_day = df.group_by(pl.col(contract["contract"]["event_time"]).dt.date()).len()
    assert per_day["len"].min() >= contract["volume"]["min_rows_per_day"]


def test_unique_across_files(contract, history, live):
    both = pl.concat([history, live])
    for field in contract["fields"]:
        if field.get("unique"):
            assert both[field["name"]].is_unique().all(), field["name"]

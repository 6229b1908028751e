"""One request record completes and encodes exactly as a batch of them does, on real sample records.

Serving completes a single record in plain floats (``OnlineFeatures.complete_one``) and a batch with
numpy arrays; both must give the same values, the same missing ones and the same errors.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from appliance.config import bundled_spec_path
from appliance.errors import InvalidInput
from appliance.features.encoding import FeatureSchema, RecordEncoder
from appliance.features.online import OnlineFeatures, materialize
from appliance.features.point_in_time import derive
from appliance.spec import Derived, load_spec
from storage.online_store import OnlineStore

SPEC = load_spec(bundled_spec_path())
FEATURES = SPEC.features
COUNT = 600


def _records(live: pl.DataFrame, shift: timedelta) -> list[dict]:
    rows = live.select(
        "user_id",
        (pl.col("event_time") + shift).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
        "amount",
        "merchant_category",
        "hour",
        "is_foreign",
    ).to_dicts()
    for i, row in enumerate(rows):  # request values as clients send them: some missing, some integers
        if i % 7 == 3:
            row["amount"] = None
        elif i % 11 == 5:
            row["amount"] = int(row["amount"])
    return rows


@pytest.fixture(scope="module")
def online(tmp_path_factory: pytest.TempPathFactory) -> OnlineFeatures:
    """The sample's features, with history for only some users and attributes for only some others."""
    folder = bundled_spec_path().parent
    history = pl.read_parquet(folder / "transactions.parquet").filter(pl.col("user_id") < "u03000")
    entities = pl.read_parquet(folder / "users.parquet").filter(pl.col("user_id") > "u01000")
    path = tmp_path_factory.mktemp("single-record") / "online.db"
    materialize(OnlineStore(path), "fraud", FEATURES, history, entities)
    return OnlineFeatures(OnlineStore(path), "fraud", FEATURES)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Live sample traffic at its own times, and the same traffic 25 days later (many rows expired)."""
    live = pl.read_parquet(bundled_spec_path().parent / "live.parquet").head(COUNT)
    return _records(live, timedelta(0)) + _records(live, timedelta(days=25))


def _same(a: dict, b: dict) -> bool:
    # Equal values, NaN-free by contract (missing is None), in the same key order.
    return list(a.items()) == list(b.items())


def test_one_record_completes_exactly_as_in_a_batch(online, records):
    batch = online.complete(records)
    for record, expected in zip(records, batch):
        assert _same(online.complete([record])[0], expected), record
        assert _same(online.complete_one(record), expected)
    # The cases the paths could differ on are all there: seen, expired and absent history; absent
    # attributes; a ratio with a missing numerator or denominator.
    since = [row["seconds_since_last"] for row in batch]
    assert sum(s is not None for s in since) > 100 and sum(s is None for s in since) > 100
    assert any(row["tx_count_30d"] is None and row["account_age_days"] is not None for row in batch)
    assert any(row["country"] is None and row["tx_count_30d"] is not None for row in batch)
    assert any(row["country"] is None and row["tx_count_30d"] is None for row in batch)
    ratios = [(row["amount"], row["amount_mean_30d"], row["amount_to_mean_30d"]) for row in batch]
    assert any(a is None and m is not None and r is None for a, m, r in ratios)
    assert any(a is not None and m is None and r is None for a, m, r in ratios)
    assert any(type(a) is int and r == a / m for a, m, r in ratios if r is not None)


def test_a_record_without_event_time_happens_now_on_both_paths(tmp_path):
    # A history that ends an hour ago, so that "now" sees it (and its TTL has not expired).
    ago = datetime.now(UTC) - timedelta(hours=1)
    history = pl.DataFrame(
        {"user_id": ["a", "a"], "event_time": [ago - timedelta(days=2), ago], "amount": [10.0, 30.0]},
        schema_overrides={"event_time": pl.Datetime("us", "UTC")},
    )
    materialize(OnlineStore(tmp_path / "online.db"), "fraud", FEATURES, history, None)
    online = OnlineFeatures(OnlineStore(tmp_path / "online.db"), "fraud", FEATURES)
    record = {"user_id": "a", "amount": 40.0}
    at = ago.timestamp() * 1e6
    earliest = (time.time_ns() // 1000 - at) / 1e6
    one, (batched,) = online.complete([record])[0], online._complete_batch([record])
    latest = (time.time_ns() // 1000 - at) / 1e6
    for row in (one, batched):
        assert earliest - 1e-6 <= row["seconds_since_last"] <= latest + 1e-6
        assert (row["tx_count_30d"], row["amount_mean_30d"], row["amount_to_mean_30d"]) == (2, 20.0, 2.0)
    assert _same({**one, "seconds_since_last": 0}, {**batched, "seconds_since_last": 0})


BAD_RECORDS = [
    ["not", "an", "object"],
    {"amount": 1.0},
    {"user_id": 17, "amount": 1.0},
    {"user_id": "u00001", "event_time": 1760000000000},  # milliseconds, not Unix seconds
    {"user_id": "u00001", "event_time": {"at": 1}},
    {"user_id": "u00001", "event_time": "yesterday"},
]


@pytest.mark.parametrize("record", BAD_RECORDS)
def test_a_bad_record_gets_the_same_error_on_both_paths(online, record):
    with pytest.raises(InvalidInput) as one:
        online.complete([record])
    with pytest.raises(InvalidInput) as batched:
        online._complete_batch([record])
    assert str(one.value) == str(batched.value)
    with pytest.raises(InvalidInput) as in_a_batch:  # in a batch, the same words after the record's number
        online.complete([{"user_id": "u00001"}, record])
    assert str(in_a_batch.value) == f"record 1: {one.value}"


def _encoder(rows: list[dict]) -> RecordEncoder:
    frame = pl.DataFrame(rows, schema={f.name: _DTYPES[f.type] for f in SPEC.model_features}, strict=False)
    return RecordEncoder(FeatureSchema.learn(SPEC.model_features, frame, FEATURES))


_DTYPES = {"float": pl.Float64, "integer": pl.Int64, "boolean": pl.Boolean, "category": pl.String}


def test_one_record_encodes_bit_for_bit_as_in_a_batch_and_as_in_training(online, records):
    completed = online.complete(records)
    # Learnt without one merchant category and one country: the model never saw them, so NaN.
    encoder = _encoder([r for r in completed if r["merchant_category"] != "travel" and r["country"] != "JP"])
    batch = encoder.encode(completed)
    unseen = [i for i, r in enumerate(completed) if r["merchant_category"] == "travel" or r["country"] == "JP"]
    assert unseen and all(np.isnan(batch[i]).any() for i in unseen)
    assert batch.dtype == np.float32 and batch.shape == (len(records), len(SPEC.model_features))
    for i, row in enumerate(completed):
        assert encoder.encode([row]).tobytes() == batch[i : i + 1].tobytes()
    frame = pl.DataFrame(completed, schema={f.name: _DTYPES[f.type] for f in SPEC.model_features}, strict=False)
    assert encoder.schema.encode_frame(frame).tobytes() == batch.tobytes()
    assert np.isnan(batch).any() and encoder.encode([]).shape == (0, batch.shape[1])


BAD_FEATURES = [
    ({"amount": "12"}, "feature 'amount' must be a number, got a string"),
    ({"amount": True}, "feature 'amount' must be a number, got a boolean"),
    ({"amount": 10**400}, "feature 'amount' must be a number within a float's range"),
    ({"hour": 1.5}, "feature 'hour' must be an integer, got a number"),
    ({"hour": -(10**400)}, "feature 'hour' must be an integer within a float's range"),
    ({"is_foreign": "yes"}, "feature 'is_foreign' must be true or false (or 1 or 0), got a string"),
    ({"is_foreign": 2}, "feature 'is_foreign' must be true or false (or 1 or 0), got an integer"),
    ({"merchant_category": 3}, "feature 'merchant_category' must be a string, got an integer"),
    ({"merchant_category": ["a"]}, "feature 'merchant_category' must be a string, got a list"),
]


@pytest.mark.parametrize("change, message", BAD_FEATURES)
def test_a_bad_feature_is_named_alone_and_in_a_batch(online, records, change, message):
    good = online.complete([records[0]])[0]
    encoder = _encoder([good])
    bad = online.complete([{**records[0], **change}])[0]  # completion passes wrong types on to the encoder
    with pytest.raises(InvalidInput) as one:
        encoder.encode([bad])
    assert str(one.value) == message
    with pytest.raises(InvalidInput) as in_a_batch:
        encoder.encode([good, bad])
    assert str(in_a_batch.value) == f"record 1: {message}"
    with pytest.raises(InvalidInput, match="missing feature 'hour'"):
        encoder.encode([{k: v for k, v in good.items() if k != "hour"}])


EDGES = [0.0, -0.0, 3.0, -2.5, 1e-300, 1e308, math.inf, -math.inf, math.nan]


def test_derive_gives_one_rows_floats_exactly_what_it_gives_arrays():
    derived = [
        Derived("r", "ratio", ["x", "y"]),
        Derived("since", "since_last"),
        Derived("r_of_r", "ratio", ["r", "x"]),
        Derived("absent", "ratio", ["x", "never-given"]),
    ]
    pairs = [(x, y) for x in EDGES for y in EDGES]
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    event = np.full(len(pairs), 1.8e15)
    feature = np.where(np.isnan(ys), np.nan, 1.8e15 - 1234567.0)
    with np.errstate(over="ignore", invalid="ignore"):  # inf / inf, 1e308 / 1e-300: meant here
        columns = derive(derived, {"x": xs, "y": ys}, event, feature)
    for i, (x, y) in enumerate(pairs):
        one = derive(derived, {"x": x, "y": y}, float(event[i]), float(feature[i]))
        for name, value in one.items():
            expected = columns[name][i]
            assert type(value) is float
            assert (math.isnan(value) and math.isnan(expected)) or np.float64(value).tobytes() == expected.tobytes(), (
                name,
                x,
                y,
            )  # -0.0 too

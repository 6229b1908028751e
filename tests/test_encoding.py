"""One encoding for training and serving: frames and request records give the same matrix."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from appliance.errors import InvalidInput
from appliance.features.encoding import FeatureSchema, RecordEncoder
from appliance.spec import Feature

FEATURES = [
    Feature("amount", "float"),
    Feature("merchant", "category"),
    Feature("hour", "integer"),
    Feature("foreign", "boolean"),
]
FRAME = pl.DataFrame(
    {"amount": [1.5, 20.0, None], "merchant": ["b", "a", "c"], "hour": [3, 23, 0], "foreign": [True, False, None]}
)


def test_records_encode_exactly_like_the_training_frame():
    schema = FeatureSchema.learn(FEATURES, FRAME)
    assert schema.columns[1].categories == ["a", "b", "c"]
    from_frame = schema.encode_frame(FRAME)
    from_records = RecordEncoder(schema).encode(FRAME.to_dicts())
    np.testing.assert_array_equal(from_frame, from_records)
    assert from_frame.dtype == np.float32 and from_frame.shape == (3, 4)


def test_unknown_category_and_null_become_missing_values():
    schema = FeatureSchema.learn(FEATURES, FRAME)
    row = RecordEncoder(schema).encode([{"amount": None, "merchant": "never-seen", "hour": 1, "foreign": False}])[0]
    assert math.isnan(row[0]) and math.isnan(row[1])
    unseen = FRAME.with_columns(merchant=pl.lit("zzz"))
    assert np.isnan(schema.encode_frame(unseen)[:, 1]).all()


@pytest.mark.parametrize(
    "record, message",
    [
        ({"merchant": "a", "hour": 1, "foreign": True}, "missing feature 'amount'"),
        ({"amount": "12", "merchant": "a", "hour": 1, "foreign": True}, "'amount' must be a number, got a string"),
        ({"amount": True, "merchant": "a", "hour": 1, "foreign": True}, "'amount' must be a number, got a boolean"),
        ({"amount": 1.0, "merchant": 3, "hour": 1, "foreign": True}, "'merchant' must be a string"),
        ({"amount": 1.0, "merchant": "a", "hour": 1.5, "foreign": True}, "'hour' must be an integer"),
        ({"amount": 1.0, "merchant": "a", "hour": 1, "foreign": "yes"}, "'foreign' must be true or false"),
    ],
)
def test_bad_records_name_the_field(record, message):
    schema = FeatureSchema.learn(FEATURES, FRAME)
    with pytest.raises(InvalidInput, match=message):
        RecordEncoder(schema).encode([record])


def test_in_a_batch_the_error_names_the_record():
    schema = FeatureSchema.learn(FEATURES, FRAME)
    good = {"amount": 1.0, "merchant": "a", "hour": 1, "foreign": True}
    with pytest.raises(InvalidInput, match="record 1: missing feature 'hour'"):
        RecordEncoder(schema).encode([good, {k: v for k, v in good.items() if k != "hour"}])
    with pytest.raises(InvalidInput, match="record 0: each record must be a JSON object"):
        RecordEncoder(schema).encode([[1, 2], good])

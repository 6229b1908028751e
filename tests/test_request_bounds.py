"""A request's entity key and category values are bounded where they are read (``data.values`` and the record
encoder), through the real server too, on data unlike the sample (integer subscriber keys, integer channel codes):

- an integer key sent as a JSON float is taken only below 2**53, where a double is exact: 9007199254740993.0
  reads as ...992, another entity, and is refused (422) rather than answered with that entity's features;
- a category value the model never saw is at most ``MAX_CATEGORY_CHARS``: a longer one is refused (422), never
  stored whole in the prediction log.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from conftest import in_production, running_server
from own_data import write_subscriptions

from appliance.data.values import MAX_CATEGORY_CHARS, entity_key, key_text
from appliance.errors import InvalidInput
from appliance.features.encoding import FeatureColumn, FeatureSchema, RecordEncoder
from appliance.layout import Layout
from storage.prediction_log import PredictionStore

BEYOND = 2**53


@pytest.mark.parametrize("value", [float(BEYOND), float(BEYOND + 2), -float(BEYOND), 1e300])
def test_an_integer_key_sent_as_a_float_a_double_cannot_hold_exactly_is_refused(value: float):
    with pytest.raises(InvalidInput) as refused:
        entity_key(value, "integer", "user", "record 2: ")
    detail = str(refused.value)
    assert detail.startswith("record 2: entity key 'user' was sent as a float"), detail
    assert "send the key as an integer (no decimal point or exponent) or a string" in detail
    assert key_text(value, "integer") == str(value)  # not the digits of a key it may not be


def test_a_float_key_a_double_holds_exactly_is_its_integer_and_a_fraction_is_no_key():
    assert entity_key(float(BEYOND - 1), "integer", "user") == str(BEYOND - 1) == key_text(float(BEYOND - 1))
    assert entity_key(-float(BEYOND - 1), "integer", "user") == str(-(BEYOND - 1))
    assert entity_key(42.0, "integer", "user") == "42" == entity_key("42", "integer", "user") == key_text(42.0)
    assert entity_key(BEYOND + 1, "integer", "user") == str(BEYOND + 1)  # a JSON integer is exact at any size
    for value, key_type, needed in [(42.5, "integer", "an integer"), (42.0, "string", "a string")]:
        with pytest.raises(InvalidInput, match=f"^entity key 'user' must be {needed}, got a number$"):
            entity_key(value, key_type, "user")


def test_a_category_the_model_never_saw_is_at_most_the_cap_and_a_known_one_is_any_length():
    known = "z" * (MAX_CATEGORY_CHARS + 10)  # learnt from the data: the model's own vocabulary is no abuse
    encoder = RecordEncoder(FeatureSchema([FeatureColumn("zone", "category", ["east", known, "west"])]))
    row = encoder.encode([{"zone": "x" * MAX_CATEGORY_CHARS}, {"zone": known}, {"zone": "west"}])
    assert math.isnan(row[0, 0]) and row[1:, 0].tolist() == [1.0, 2.0]  # unseen: the missing value
    with pytest.raises(InvalidInput) as refused:
        encoder.encode([{"zone": "east"}, {"zone": "x" * 3_000_000}])
    assert str(refused.value) == (
        "record 1: feature 'zone' is 3,000,000 characters; a category is a label, at most 1,024 characters: "
        "send the category itself"
    )


def test_the_server_refuses_a_rounded_key_and_an_endless_category_and_logs_neither(tmp_path: Path):
    home = tmp_path / "home"
    in_production(home, write_subscriptions(tmp_path / "data", days=10, live_days=4), "history.parquet")
    fields = '"logged_at": "2026-03-07T10:00:00", "minutes": 12.5, "on_mobile": 1'
    with running_server(home) as server:

        def post(body: str) -> httpx.Response:
            return server.client.post(
                "/v1/models/subs/predict", content=body, headers={"content-type": "application/json"}
            )

        for key in ["1001", "1001.0", '"1001"']:  # three spellings of one key
            answer = post(f'{{"subscriber": {key}, "channel": 2, {fields}}}')
            assert answer.status_code == 200, answer.text
        for key in ["9007199254740993.0", "9.007199254740993e15", "1001.5"]:
            refused = post(f'{{"subscriber": {key}, "channel": 2, {fields}}}')
            assert refused.status_code == 422 and "entity key 'subscriber'" in refused.json()["detail"], refused.text
        long = f'{{"subscriber": 1002, "channel": "{"x" * 3_000_000}", {fields}}}'
        for body, where in [(long, ""), (f'[{{"subscriber": 1001, "channel": 2, {fields}}}, {long}]', "record 1: ")]:
            refused = post(body)  # one record (micro-batched) and a list
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"].startswith(f"{where}feature 'channel' is 3,000,000 characters")
        server.app.predict.state.log.flush()
    store = PredictionStore(Layout(home).predictions_db)
    try:
        logged = store.conn.execute("SELECT entity_key, length(features_json) FROM predictions").fetchall()
    finally:
        store.close()
    assert [key for key, _ in logged] == ["1001"] * 3  # the answered requests only, each of its own entity
    assert max(length for _, length in logged) < 200

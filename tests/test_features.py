"""The feature store: point-in-time edges, TTL, late rows, no history, online = offline, skew."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import polars as pl
import pytest

from appliance.data.contract import load_contract
from appliance.data.ingest import ingest
from appliance.errors import InvalidInput, NotReady
from appliance.features.feature_table import feature_rows
from appliance.features.online import OnlineFeatures, materialize, materialize_model, namespace, served_definitions
from appliance.features.point_in_time import derive, point_in_time_features
from appliance.features.skew import check_skew
from appliance.home import Home
from appliance.spec import Aggregation, Derived, Feature, FeaturesSection, load_spec
from storage.online_store import OnlineStore
from tests.conftest import small_spec

UTC = UTC
T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
HOUR, DAY, MICRO = timedelta(hours=1), timedelta(days=1), timedelta(microseconds=1)
FEATURES = FeaturesSection(
    entity_key="user_id",
    event_time="event_time",
    request=[Feature("amount", "float")],
    entity_attributes=[Feature("country", "category")],
    aggregations=[
        Aggregation("n_1h", "count", "1h"),
        Aggregation("sum_1h", "sum", "1h", column="amount"),
        Aggregation("mean_1d", "mean", "1d", column="amount"),
        Aggregation("max_1d", "max", "1d", column="amount"),
    ],
    derived=[Derived("to_mean", "ratio", ["amount", "mean_1d"]), Derived("since", "since_last")],
    ttl="1d",
)
ENTITIES = pl.DataFrame({"user_id": ["a", "c"], "country": ["GB", "JP"]})


def _events(*rows: tuple[str, datetime, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "event_time": [r[1] for r in rows], "amount": [r[2] for r in rows]},
        schema={"user_id": pl.String, "event_time": pl.Datetime("us", "UTC"), "amount": pl.Float64},
    )


# User a: one event, then two at the same instant exactly one hour later, then one two hours after those.
HISTORY = _events(("a", T0, 10.0), ("a", T0 + HOUR, 20.0), ("a", T0 + HOUR, 30.0), ("a", T0 + 3 * HOUR, 40.0))


def _offline(history: pl.DataFrame, rows: pl.DataFrame) -> list[dict]:
    return point_in_time_features(FEATURES, rows, feature_rows(FEATURES, history), ENTITIES).to_dicts()


def test_an_event_never_sees_itself_nor_its_instant_and_window_edges_are_inclusive():
    got = _offline(HISTORY, HISTORY)
    # The first event has no earlier history.
    assert got[0]["n_1h"] is None and got[0]["since"] is None and got[0]["country"] == "GB"
    # The two events at T0+1h see only T0's row: neither sees itself nor its twin.
    for row in got[1:3]:
        assert (row["n_1h"], row["sum_1h"], row["since"]) == (1, 10.0, 3600.0)
    # The last sees the row at T0+1h, whose 1h window [T0, T0+1h] includes T0 on its lower edge.
    last = got[3]
    assert (last["n_1h"], last["sum_1h"], last["mean_1d"], last["max_1d"]) == (3, 60.0, 20.0, 30.0)
    assert last["to_mean"] == 2.0 and last["since"] == 7200.0


def test_an_entity_with_no_history_gets_missing_aggregations_and_its_attributes():
    rows = _events(("c", T0 + 5 * HOUR, 1.0), ("b", T0 + 5 * HOUR, 1.0))
    c, b = _offline(HISTORY, rows)
    assert c["country"] == "JP" and b["country"] is None
    for row in (c, b):
        assert all(row[n] is None for n in ("n_1h", "sum_1h", "mean_1d", "max_1d", "to_mean", "since"))


def _online(tmp_path, history: pl.DataFrame) -> OnlineFeatures:
    materialize(OnlineStore(tmp_path / "online.db"), "m", FEATURES, history, ENTITIES)
    # A second store object: its own connection, as the server process has.
    return OnlineFeatures(OnlineStore(tmp_path / "online.db"), "m", FEATURES)


def test_online_a_request_at_the_instant_of_the_latest_event_does_not_see_it(tmp_path):
    at = T0 + 3 * HOUR
    served = _online(tmp_path, HISTORY).complete([{"user_id": "a", "event_time": at.isoformat(), "amount": 5.0}])[0]
    assert served["country"] == "GB"
    assert all(served[n] is None for n in ("n_1h", "sum_1h", "mean_1d", "max_1d", "to_mean", "since"))
    # Offline still holds the earlier row (T0+1h); the online store keeps only the latest one, so it
    # answers requests after the entity's latest event (live traffic), and never leaks that event.
    assert _offline(HISTORY, _events(("a", at, 5.0)))[0]["n_1h"] == 3


@pytest.mark.parametrize(
    "after, visible",
    [
        (MICRO, True),  # just after the latest event
        (DAY, True),  # exactly the TTL old: still used
        (DAY + MICRO, False),  # older than the TTL: expired, as if there were no history
    ],
)
def test_online_and_offline_agree_after_the_latest_event_and_on_ttl_expiry(tmp_path, after, visible):
    online = _online(tmp_path, HISTORY)
    at = T0 + 3 * HOUR + after
    request = {"user_id": "a", "event_time": at.isoformat(), "amount": 50.0}
    served = online.complete([request])[0]
    offline = _offline(HISTORY, _events(("a", at, 50.0)))[0]
    names = ["country", "n_1h", "sum_1h", "mean_1d", "max_1d", "to_mean", "since"]
    assert {n: served[n] for n in names} == {n: offline[n] for n in names}
    assert served["country"] == "GB"
    if visible:
        # The last row: window [T0+2h, T0+3h] holds only the event at T0+3h; the day holds all four.
        assert (served["n_1h"], served["sum_1h"], served["mean_1d"], served["max_1d"]) == (1, 40.0, 25.0, 40.0)
        assert served["to_mean"] == 2.0 and served["since"] == after.total_seconds()
    else:
        assert all(served[n] is None for n in ("n_1h", "sum_1h", "mean_1d", "max_1d", "to_mean", "since"))


def test_a_late_row_counts_by_its_event_time_once_ingested_and_materialized(tmp_path):
    late = _events(("a", T0 + 2 * HOUR, 100.0))
    with_late = pl.concat([HISTORY, late])
    got = _offline(with_late, HISTORY)
    assert got[1]["n_1h"] == 1  # events before the late row: unchanged
    assert (got[3]["n_1h"], got[3]["sum_1h"]) == (3, 150.0)  # after it: the late row's window
    request = [{"user_id": "a", "event_time": (T0 + 4 * HOUR).isoformat(), "amount": 1.0}]
    before = _online(tmp_path, HISTORY).complete(request)[0]
    after = _online(tmp_path, with_late).complete(request)[0]
    assert before["mean_1d"] == 25.0 and after["mean_1d"] == 40.0  # (10 + 20 + 30 + 100 + 40) / 5


def test_requests_are_completed_in_batches_and_bad_ones_name_the_record(tmp_path):
    online = _online(tmp_path, HISTORY)
    at = (T0 + 4 * HOUR).isoformat()
    rows = online.complete(
        [{"user_id": "a", "event_time": at, "amount": 50.0}, {"user_id": "c", "event_time": at, "amount": 50.0}]
    )
    assert rows[0]["n_1h"] == 1 and rows[1]["n_1h"] is None and rows[1]["country"] == "JP"
    with pytest.raises(InvalidInput, match="record 1: missing entity key 'user_id'"):
        online.complete([{"user_id": "a"}, {"amount": 1.0}])
    for bad in ("yesterday", True, -5, 10**12):  # 10 ** 12: milliseconds, not Unix seconds
        with pytest.raises(InvalidInput, match=r"'event_time' must be an ISO 8601 time .* or Unix seconds"):
            online.complete([{"user_id": "a", "event_time": bad}])
    unix = (T0 + 4 * HOUR).timestamp()  # a Unix timestamp is the same instant as its ISO text
    by_number, by_text = (online.complete([{"user_id": "a", "event_time": t, "amount": 50.0}])[0] for t in (unix, at))
    assert by_number | {"event_time": at} == by_text
    never = OnlineFeatures(OnlineStore(tmp_path / "online.db"), "other-model", FEATURES)
    with pytest.raises(NotReady, match="appliance features materialize other-model"):
        never.complete([{"user_id": "a"}])


def test_a_ratio_with_a_missing_or_zero_denominator_is_missing():
    out = derive(
        [Derived("r", "ratio", ["x", "y"])],
        {"x": np.array([1.0, 1.0, np.nan, 6.0]), "y": np.array([0.0, np.nan, 2.0, 3.0])},
        np.zeros(4),
        np.zeros(4),
    )["r"]
    assert [math.isnan(v) for v in out[:3]] == [True] * 3 and out[3] == 2.0


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('window = "1h" }', 'window = "an hour" }', "is not like '30m'"),
        ('of = ["amount", "amount_mean_30d"]', 'of = ["amount"]', "takes 2 feature names"),
        ('of = ["amount", "amount_mean_30d"]', 'of = ["amount", "nope"]', "unknown feature(s) ['nope']"),
        ('function = "max", column = "amount"', 'function = "max"', "needs a column"),
        ('of = ["amount", "amount_mean_30d"]', 'of = ["amount", "country"]', "divides categories ['country']"),
    ],
)
def test_bad_feature_definitions_are_refused_with_the_reason(tmp_path, old, new, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_spec(small_spec(tmp_path, **{old: new}))


def test_versions_record_their_definitions_and_a_new_definition_gets_its_own_namespace(home_dir):
    with Home(home_dir) as home:
        spec = home.spec("fraud")
        assert served_definitions(home, "fraud") == [spec.features, spec.features]
        schema = home.registry.version("fraud", 1).feature_schema
        assert [a["name"] for a in schema["definitions"]["aggregations"]][:2] == ["tx_count_1h", "amount_sum_1h"]
    longer = msgspec.structs.replace(
        spec.features,
        aggregations=[
            msgspec.structs.replace(spec.features.aggregations[0], window="2h"),
            *spec.features.aggregations[1:],
        ],
    )
    assert namespace("fraud", longer) != namespace("fraud", spec.features)
    # The TTL and the derived features are applied at lookup, so they do not change what is stored.
    assert namespace("fraud", msgspec.structs.replace(spec.features, ttl="1h")) == namespace("fraud", spec.features)


def test_the_skew_check_on_the_sample_finds_nothing_then_finds_stale_values(home_dir, tmp_path):
    with Home(home_dir) as home:
        spec = home.spec("fraud")
        clean = check_skew(home, spec, sample=100)
        assert clean.entities == 100 and clean.mismatches == []
        assert {"tx_count_1h", "amount_mean_30d", "country", "seconds_since_last"} <= set(clean.features)
        live = pl.read_parquet(spec.resolve(spec.data.live))
        day = live.filter(pl.col("event_time") < datetime(2026, 10, 17, tzinfo=UTC))
        day.write_parquet(tmp_path / "day.parquet")
        ingest(
            home.conn, home.offline, "fraud", load_contract(spec.resolve(spec.data.contract)), tmp_path / "day.parquet"
        )
        stale = check_skew(home, spec, sample=100)
        assert stale.mismatches and {m.feature for m in stale.mismatches} >= {"seconds_since_last"}
        materialize_model(home, spec)
        assert check_skew(home, spec, sample=100).mismatches == []

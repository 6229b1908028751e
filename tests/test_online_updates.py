"""The online store follows live traffic: answered requests move each entity's row forward with the
offline feature table's semantics (same-instant twins, out-of-order and old events included)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import msgspec
import polars as pl

from appliance.config import bundled_spec_path
from appliance.features.feature_table import FEATURE_TIME, feature_rows, window_micros
from appliance.features.online import materialize, namespace, update_targets
from appliance.features.online_updates import OnlineUpdater
from appliance.features.skew import check_skew, same_value
from appliance.features.tail import TailPlan
from appliance.home import Home
from appliance.layout import Layout
from appliance.spec import load_spec
from storage.database import connect, transaction
from storage.online_schema import MIGRATIONS
from storage.online_store import _MERGE_POINT, OnlineStore
from tests.conftest import SAMPLE_RECORD

UTC = UTC
SPEC = load_spec(bundled_spec_path())
FEATURES = SPEC.features
NS = namespace("fraud", FEATURES)
SECOND, DAY = timedelta(seconds=1), timedelta(days=1)


def _slices(users: int = 40, live_rows: int = 400) -> tuple[pl.DataFrame, pl.DataFrame]:
    history = pl.read_parquet(SPEC.resolve(SPEC.data.source))
    chosen = history["user_id"].unique().sort().head(users).implode()
    live = pl.read_parquet(SPEC.resolve(SPEC.data.live))
    return (
        history.filter(pl.col("user_id").is_in(chosen)),
        live.filter(pl.col("user_id").is_in(chosen)).sort("event_time").head(live_rows),
    )


def _log_row(i: int, record: dict, status: int = 200, received_at: float | None = None) -> tuple:
    # PREDICTION_COLUMNS order, the request record as the server logs it
    return (
        f"r{i}",
        0,
        "fraud",
        1,
        "production",
        None,
        time.time() if received_at is None else received_at,
        record.get("event_time"),
        record["user_id"],
        record,
        0.5,
        0,
        1.0,
        status,
    )


def _request(event: dict) -> dict:
    return {
        "user_id": event["user_id"],
        "event_time": event["event_time"].isoformat().replace("+00:00", "Z"),
        "amount": event["amount"],
        "merchant_category": event["merchant_category"],
        "hour": event["hour"],
        "is_foreign": event["is_foreign"],
    }


def _assert_online_equals_offline(store: OnlineStore, events: pl.DataFrame) -> int:
    offline = feature_rows(FEATURES, events, latest_only=True)
    online = store.read(NS, offline["user_id"].to_list())
    names = [a.name for a in FEATURES.aggregations]
    for row in offline.iter_rows(named=True):
        at, payload = online[row["user_id"]]
        assert at == round(row[FEATURE_TIME].timestamp() * 1_000_000), row["user_id"]
        values = msgspec.json.decode(payload)
        for name in names:
            assert same_value(values[name], row[name]), (row["user_id"], name, values[name], row[name])
            assert type(values[name]) is type(row[name]) or row[name] is None, name  # counts stay integers
    return offline.height


def test_live_events_give_each_entity_the_offline_tables_latest_row(tmp_path):
    history, live = _slices()
    store = OnlineStore(tmp_path / "online.db")
    materialize(store, "fraud", FEATURES, history, None)
    updater = OnlineUpdater(OnlineStore(tmp_path / "online.db"))
    # two arms of one definition: one namespace
    updater.follow({"fraud": update_targets("fraud", [FEATURES, FEATURES])})
    events = live.to_dicts()
    first, second = events[0], events[1]
    extra = [
        {**first, "amount": 7.25},  # a twin at the same instant
        {**second, "event_time": second["event_time"] - 3600 * SECOND, "amount": 3.0},  # out of order, in window
        {**first, "event_time": first["event_time"] - 40 * DAY, "amount": 9999.0},  # older than every window
        {**first, "user_id": "u-new", "amount": 12.0},  # an entity with no history at all
    ]
    requests = [_request(e) for e in events + extra]
    rows = [_log_row(i, r) for i, r in enumerate(requests)]
    rows.insert(5, _log_row(-1, {**requests[5], "amount": 1e6}, status=500))  # not answered: not an event
    now = events[-1]["event_time"] + 60 * SECOND  # served without an event time: now
    rows.append(_log_row(-2, {k: v for k, v in requests[2].items() if k != "event_time"}, received_at=now.timestamp()))
    for start in range(0, len(rows), 37):  # batches as the writer cuts them, an entity's events across several
        updater.apply(rows[start : start + 37])
    # On the edges of the windows of that newest event: each counts (both edges are inclusive).
    edges = [{**events[2], "event_time": now - window, "amount": 1.5} for window in (3600 * SECOND, 7 * DAY, 30 * DAY)]
    updater.apply([_log_row(100 + i, _request(e)) for i, e in enumerate(edges)])
    applied = pl.concat(
        [
            live,
            pl.DataFrame(extra, schema=live.schema),
            pl.DataFrame([{**events[2], "event_time": now}, *edges], schema=live.schema),
        ]
    )
    assert _assert_online_equals_offline(store, pl.concat([history, applied], how="vertical_relaxed")) > 40
    assert updater.stale == 0 and updater.errors == 0 and updater.updated >= len(set(live["user_id"]))


def test_an_event_time_past_the_servers_clock_moves_nothing(tmp_path):
    # A client's clock (or bug) must not carry an entity's row into the future: every later event would
    # then be an old one, and the row would answer with what that one event says for good.
    history, live = _slices(users=5, live_rows=20)
    store = OnlineStore(tmp_path / "online.db")
    materialize(store, "fraud", FEATURES, history, None)
    updater = OnlineUpdater(OnlineStore(tmp_path / "online.db"))
    updater.follow({"fraud": update_targets("fraud", [FEATURES])})
    event = live.row(0, named=True)
    before = store.read(NS, [event["user_id"]])
    answered_at = (event["event_time"] + 60 * SECOND).timestamp()
    ahead = [
        _log_row(0, {**_request(event), "event_time": "2199-12-31T23:59:59Z"}, received_at=answered_at),
        _log_row(1, _request({**event, "event_time": event["event_time"] + DAY}), received_at=answered_at),
    ]
    assert updater.apply(ahead) == 0 and updater.future == 2
    assert store.read(NS, [event["user_id"]]) == before
    within = event["event_time"] + 5 * 60 * SECOND  # a client's clock a few minutes ahead is still believed
    assert updater.apply([_log_row(2, _request({**event, "event_time": within}), received_at=answered_at)]) == 1
    assert store.read(NS, [event["user_id"]])[event["user_id"]][0] == round(within.timestamp() * 1_000_000)
    assert updater.future == 2 and updater.stale == 0 and updater.errors == 0


def test_materialize_writes_each_entitys_tail_within_its_longest_window(tmp_path):
    history, _ = _slices(users=10)
    store = OnlineStore(tmp_path / "online.db")
    entities = pl.DataFrame({"user_id": ["u-attributes-only"], "account_age_days": [3], "country": ["GB"]})
    materialize(store, "fraud", FEATURES, history, entities)
    assert store.materialization(NS)["tails"] is True
    db = sqlite3.connect(tmp_path / "online.db")
    rows = dict(db.execute("SELECT entity, feature_time FROM feature_rows WHERE namespace = ?", (NS,)))
    points = db.execute(
        "SELECT entity, min(t), max(t), sum(n) FILTER (WHERE col = 0), count(DISTINCT col) "
        "FROM tail_points WHERE namespace = ? GROUP BY entity",
        (NS,),
    ).fetchall()
    assert rows["u-attributes-only"] is None and len(points) == len(rows) - 1 == 10  # no events: no points
    horizon = TailPlan(FEATURES).horizon
    for entity, oldest, newest, events, columns in points:
        assert newest == rows[entity] and oldest >= newest - horizon and columns == 2  # the count, then amount
        window = history.filter(
            (pl.col("user_id") == entity) & (pl.col("event_time").dt.epoch("us") >= newest - horizon)
        )
        assert events == window.height


def test_an_online_db_from_before_tails_upgrades_and_is_left_as_is_until_materialized(tmp_path):
    history, live = _slices(users=5, live_rows=20)
    path = tmp_path / "online.db"
    old = connect(path, MIGRATIONS[:1])
    old.execute("INSERT INTO feature_rows VALUES (?, ?, ?, ?)", (NS, "u-old", 1, b'{"tx_count_30d": 7}'))
    old.execute("INSERT INTO materializations VALUES (?, 1, '{}', 0)", (NS,))
    old.close()
    store = OnlineStore(path)
    updater = OnlineUpdater(OnlineStore(path))
    updater.follow({"fraud": update_targets("fraud", [FEATURES])})
    record = {**_request(live.row(0, named=True)), "user_id": "u-old"}
    assert updater.apply([_log_row(0, record), _log_row(1, {**record, "user_id": "u-fresh"})]) == 0
    assert store.entities(NS) == ["u-old"] and store.read(NS, ["u-old"]) == {"u-old": (1, b'{"tx_count_30d": 7}')}
    assert updater.stale == 2 and store.materialization(NS)["tails"] is False
    materialize(store, "fraud", FEATURES, history, None)
    requests = [_request(e) for e in live.to_dicts()]
    updater.apply([_log_row(i, r) for i, r in enumerate(requests)])
    assert _assert_online_equals_offline(store, pl.concat([history, live], how="vertical_relaxed")) >= 5
    assert updater.stale == 2


def test_a_namespace_never_materialized_is_not_written(tmp_path):
    updater = OnlineUpdater(OnlineStore(tmp_path / "online.db"))
    updater.follow({"fraud": update_targets("fraud", [FEATURES])})
    assert updater.apply([_log_row(0, SAMPLE_RECORD)]) == 0
    assert OnlineStore(tmp_path / "online.db").entities(NS) == []


def _stored(home, entity: str) -> dict:
    at, payload = OnlineStore(Layout(home).online_db).read(NS, [entity])[entity]
    return {"at": at, **msgspec.json.decode(payload)}


def test_a_second_request_sees_the_first_one_counted(server):
    before = _stored(server.home, "u00042")
    first = {**SAMPLE_RECORD, "event_time": "2026-10-16T10:00:00Z", "amount": 500.0}
    assert server.client.post("/v1/models/fraud/predict", json=first).status_code == 200
    deadline = time.monotonic() + 10
    while _stored(server.home, "u00042")["at"] == before["at"]:
        assert time.monotonic() < deadline, "the online row did not move forward"
        time.sleep(0.02)
    after = _stored(server.home, "u00042")
    assert after["at"] == round(datetime(2026, 10, 16, 10, tzinfo=UTC).timestamp() * 1_000_000)
    assert after["tx_count_30d"] == before["tx_count_30d"] + 1 and after["tx_count_1h"] == 1
    assert after["amount_sum_1h"] == 500.0 and after["account_age_days"] == before["account_age_days"]
    with Home(server.home) as home:  # the skew check leaves out a row moved past the ingested history
        report = check_skew(home, home.spec("fraud"), sample=20)
    assert report.ahead == 1 and report.mismatches == []
    metrics = server.client.get("/metrics").text
    assert "appliance_online_rows_updated_total 1" in metrics and "appliance_online_stale_events_total 0" in metrics
    # answered (within [data] event_time_future of the clock), but two hours ahead is no event to keep
    future = {**SAMPLE_RECORD, "event_time": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}
    assert server.client.post("/v1/models/fraud/predict", json=future).status_code == 200
    while "appliance_online_future_events_total 1" not in server.client.get("/metrics").text:
        assert time.monotonic() < deadline + 10, "the far-future event was not counted"
        time.sleep(0.02)
    assert _stored(server.home, "u00042") == after


class _FirstSqlStore(OnlineStore):
    """The online update as first written — each entity's newest by a GROUP BY over all its points, then
    one statement joining every point of every touched entity with FILTERed aggregates, grouped per entity:
    the reference the faster SQL must match bit for bit."""

    def advance(self, namespace, points, entities, horizon, rows_sql):
        values = ", ".join(f"{_first_aggregate(a)} AS a{i}" for i, a in enumerate(FEATURES.aggregations))
        sets = "".join(f", '$.\"{a.name}\"', a.a{i}" for i, a in enumerate(FEATURES.aggregations))
        first_rows_sql = (
            "WITH newest AS (SELECT value ->> 0 AS entity, value ->> 1 AS at FROM json_each(:newest)), "
            f"agg AS (SELECT n.entity, n.at, {values} FROM newest n CROSS JOIN tail_points p "
            "ON p.namespace = :namespace AND p.entity = n.entity GROUP BY n.entity, n.at) "
            f"SELECT a.entity, a.at, json_set(coalesce(CAST(f.payload AS TEXT), '{{}}'){sets}) FROM agg a "
            "LEFT JOIN feature_rows f ON f.namespace = :namespace AND f.entity = a.entity"
        )
        conn = self._conn()
        with transaction(conn):
            conn.executemany(_MERGE_POINT, points)
            newest = conn.execute(
                "SELECT entity, max(t) FROM tail_points WHERE namespace = ? AND entity IN "
                "(SELECT value FROM json_each(?)) GROUP BY entity",
                (namespace, json.dumps(entities)),
            ).fetchall()
            conn.executemany(
                "DELETE FROM tail_points WHERE namespace = ? AND entity = ? AND t < ?",
                ((namespace, entity, at - horizon) for entity, at in newest),
            )
            return conn.execute(
                "INSERT OR REPLACE INTO feature_rows (namespace, entity, feature_time, payload) "
                f"SELECT :namespace, * FROM ({first_rows_sql})",
                {"namespace": namespace, "newest": json.dumps([tuple(row) for row in newest])},
            ).rowcount


def _first_aggregate(a) -> str:
    col = 0 if a.column is None else TailPlan(FEATURES).columns.index(a.column) + 1
    inside = f"FILTER (WHERE p.col = {col} AND p.t >= n.at - {window_micros(a.window)})"
    if a.column is None or a.function == "count":
        return f"coalesce(sum(p.n) {inside}, 0)"
    return {
        "sum": f"sum(p.s) {inside}",
        "mean": f"sum(p.s) {inside} / nullif(sum(p.n) {inside}, 0)",
        "min": f"min(p.lo) {inside}",
        "max": f"max(p.hi) {inside}",
    }[a.function]


def _contents(path) -> tuple[list, list]:
    db = sqlite3.connect(path)
    try:
        return (
            db.execute(
                "SELECT namespace, entity, typeof(feature_time), feature_time, typeof(payload), payload "
                "FROM feature_rows ORDER BY namespace, entity"
            ).fetchall(),
            db.execute("SELECT * FROM tail_points ORDER BY namespace, entity, t, col").fetchall(),
        )
    finally:
        db.close()


def test_live_updates_write_the_same_bytes_as_the_first_sql(tmp_path):
    history, live = _slices(users=60, live_rows=900)
    events = live.to_dicts()
    busy = events[0]
    extra = [
        {**events[-1], "amount": 2.5},  # a twin at the same instant, in the same batch
        {**busy, "amount": 7.25},  # a twin at the same instant
        {**events[1], "event_time": events[1]["event_time"] - 3600 * SECOND, "amount": 3.0},  # out of order
        {**busy, "event_time": busy["event_time"] - 40 * DAY, "amount": 9999.0},  # older than every window
        {**busy, "user_id": "u-new", "amount": 12.0},  # no history at all
    ]
    now = events[-1]["event_time"] + 60 * SECOND
    # An entity's newest sums, whose rounding depends on the order they add in (1e16 + 1.0 rounds to 1e16).
    extra += [
        {**events[2], "event_time": now + k * SECOND, "amount": amount}
        for k, amount in ((1, 1e16), (2, 1.0), (3, -1e16), (4, 0.1), (5, 0.2))
    ]
    requests = [_request(e) for e in events + extra]
    requests.append({k: v for k, v in requests[3].items() if k != "amount"})  # the column missing: n = 0
    rows = [_log_row(i, r) for i, r in enumerate(requests)]
    rows.append(_log_row(-2, {k: v for k, v in requests[4].items() if k != "event_time"}, received_at=now.timestamp()))
    edges = [{**events[4], "event_time": now - window, "amount": 1.5} for window in (3600 * SECOND, 7 * DAY, 30 * DAY)]
    rows += [_log_row(100 + i, _request(e)) for i, e in enumerate(edges)]

    results = []
    for name, store_type in (("first", _FirstSqlStore), ("now", OnlineStore)):
        path = tmp_path / name / "online.db"
        path.parent.mkdir()
        materialize(OnlineStore(path), "fraud", FEATURES, history, None)
        updater = OnlineUpdater(store_type(path))
        updater.follow({"fraud": update_targets("fraud", [FEATURES])})
        written = sum(updater.apply(rows[start : start + 37]) for start in range(0, len(rows), 37))
        assert updater.errors == 0 and updater.stale == 0
        results.append((written, _contents(path)))
    (written_first, (rows_first, points_first)), (written_now, (rows_now, points_now)) = results
    assert written_now == written_first > 60
    assert rows_now == rows_first  # same entities, times, payload types and bytes
    assert points_now == points_first
    ordered = next(row[-1] for row in rows_now if row[1] == events[2]["user_id"])
    assert msgspec.json.decode(ordered)["tx_count_1h"] >= 5  # the order-sensitive sums were in its window


def test_a_rows_update_reads_only_the_entitys_key_range():
    # What keeps an update cheap: each statement seeks one entity's points on the primary key; none sorts
    # or reads the whole table.
    conn = connect(":memory:", MIGRATIONS)
    plan = TailPlan(FEATURES)
    steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {plan.rows_sql}", ("ns", "u1", 0))]
    assert "SEARCH tail_points USING PRIMARY KEY (namespace=? AND entity=? AND t>?)" in steps
    assert not [s for s in steps if "TEMP B-TREE" in s or s.startswith("SCAN tail_points")], steps

"""Online rows never go back in time: a materialization (``features materialize``, and ``up`` at every start)
keeps the events answered requests moved each entity's row by since its newest ingested event, so the row
holds the feature table over the history and those requests; once ingest catches up, the ingested events
win and nothing counts twice. Data unlike the sample: integer keys, other column names and windows."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from conftest import in_production, running_server
from own_data import write_subscriptions

from appliance.bring_up import bring_up
from appliance.cli import main
from appliance.data.snapshots import list_snapshots, read_snapshots
from appliance.features.feature_table import FEATURE_TIME, feature_rows
from appliance.features.online import materialize, namespace, update_targets
from appliance.features.online_updates import OnlineUpdater
from appliance.features.skew import same_value
from appliance.home import Home
from appliance.spec import Aggregation, Derived, Feature, FeaturesSection
from storage.online_store import OnlineStore

START = datetime(2025, 6, 1, tzinfo=UTC)
MICROS = 1_000_000
DEVICES = FeaturesSection(
    entity_key="device",
    event_time="seen_at",
    request=[Feature("kilobytes", "float")],
    entity_attributes=[Feature("firmware", "integer")],
    aggregations=[
        Aggregation("bursts_2h", "count", "2h"),
        Aggregation("kb_sum_1d", "sum", "1d", column="kilobytes"),
        Aggregation("kb_min_6h", "min", "6h", column="kilobytes"),
        Aggregation("kb_max_1d", "max", "1d", column="kilobytes"),
        Aggregation("kb_mean_3d", "mean", "3d", column="kilobytes"),
    ],
    derived=[Derived("idle_s", "since_last")],
)
SCHEMA = {"device": pl.Int64, "seen_at": pl.Datetime("us", "UTC"), "kilobytes": pl.Float64}


def _events(rng: np.random.Generator, devices: np.ndarray, n: int, start: datetime, hours: float) -> pl.DataFrame:
    # Whole seconds, so same-instant twins happen; some rows without a value (a count, no sum).
    seconds = rng.integers(0, int(hours * 3600), n)
    kilobytes = rng.gamma(1.5, 40.0, n).round(2)
    return pl.DataFrame(
        {
            "device": rng.choice(devices, n),
            "seen_at": [start + timedelta(seconds=int(s)) for s in seconds],
            "kilobytes": np.where(rng.random(n) < 0.1, np.nan, kilobytes),
        },
        schema=SCHEMA,
    ).with_columns(pl.col("kilobytes").fill_nan(None))


def _answered(events: pl.DataFrame, first: int) -> list[tuple]:
    # Prediction log rows (PREDICTION_COLUMNS order) of requests answered a second after each event.
    return [
        (
            f"q{first + i}",
            0,
            "net",
            1,
            "production",
            None,
            e["seen_at"].timestamp() + 1,
            None,
            str(e["device"]),
            {**e, "seen_at": e["seen_at"].isoformat()},
            0.5,
            0,
            1.0,
            200,
        )
        for i, e in enumerate(events.iter_rows(named=True))
    ]


def _expected(known: pl.DataFrame) -> dict[str, tuple[int, dict]]:
    latest = feature_rows(DEVICES, known, latest_only=True)
    return {
        str(row["device"]): (
            round(row[FEATURE_TIME].timestamp() * MICROS),
            {a.name: row[a.name] for a in DEVICES.aggregations},
        )
        for row in latest.iter_rows(named=True)
    }


def _assert_rows(store: OnlineStore, known: pl.DataFrame, firmware: dict[str, int]) -> dict[str, int]:
    name = namespace("net", DEVICES)
    expected = _expected(known)
    stored = store.read(name, store.entities(name))
    assert set(stored) == set(expected) | set(firmware)
    for entity, (at, values) in expected.items():
        got_at, payload = stored[entity]
        got = msgspec.json.decode(payload)
        assert got_at == at, entity
        for feature, value in values.items():
            assert same_value(got[feature], value), (entity, feature, got[feature], value)
            assert value is None or type(got[feature]) is type(value), feature  # counts stay integers
        assert got.get("firmware") == firmware.get(entity), entity
    return {entity: at for entity, (at, _) in stored.items() if at is not None}


@pytest.mark.parametrize(("seed", "devices", "per_round"), [(1, 12, 40), (2, 150, 900), (3, 3, 25)])
def test_materializing_keeps_what_requests_added_after_each_entitys_ingested_history(
    tmp_path, seed, devices, per_round
):
    rng = np.random.default_rng(seed)
    ids = np.arange(7_000, 7_000 + devices) * 13  # integer keys, not in order of first event
    strangers = np.arange(-5, 0)  # served, never ingested
    firmware = {str(d): int(rng.integers(1, 9)) for d in ids[: devices // 2]}
    entities = pl.DataFrame({"device": [int(d) for d in firmware], "firmware": list(firmware.values())})
    ingested = _events(rng, ids, per_round * 4, START, 24 * 10)
    store = OnlineStore(tmp_path / "online.db")
    materialize(store, "net", DEVICES, ingested, entities)
    updater = OnlineUpdater(OnlineStore(tmp_path / "online.db"))
    updater.follow({"net": update_targets("net", [DEVICES])})
    served = pl.DataFrame(schema=SCHEMA)
    known = ingested  # what the online rows should hold: the store's events, as the model has them
    clock = START + timedelta(days=10)
    held = _assert_rows(store, known, firmware)
    for _ in range(5):
        # Requests: mostly ahead of the history, some late (older than an entity's row), some strangers.
        fresh = pl.concat(
            [
                _events(rng, ids, per_round, clock, 30),
                _events(rng, ids, per_round // 5 + 1, clock - timedelta(hours=20), 20),
                _events(rng, strangers, per_round // 10 + 1, clock, 30),
            ]
        )
        updater.apply(_answered(fresh, served.height))
        served, known = pl.concat([served, fresh]), pl.concat([known, fresh])
        held_live = _assert_rows(store, known, firmware)
        assert all(held_live[e] >= at for e, at in held.items())
        # Ingest catches up for a random half of the devices: every event of theirs up to a cut, whether
        # answered or not, plus events no request saw; the others' history stays behind.
        caught_up = rng.choice(ids, devices // 2 + 1, replace=False)
        cut = clock + timedelta(hours=float(rng.uniform(0, 30)))
        unseen = _events(rng, caught_up, per_round // 2 + 1, clock, (cut - clock).total_seconds() / 3600 + 1e-3)
        answered = served.filter(pl.col("device").is_in(caught_up) & (pl.col("seen_at") <= cut)).join(
            ingested, on=list(SCHEMA), how="anti", nulls_equal=True
        )  # each event ingested once
        ingested = pl.concat([ingested, answered, unseen])
        report = materialize(store, "net", DEVICES, ingested, entities)
        newest = ingested.group_by("device").agg(pl.col("seen_at").max().alias("newest"))
        after = (
            served.join(newest, on="device", how="left")
            .filter(pl.col("newest").is_null() | (pl.col("seen_at") > pl.col("newest")))
            .drop("newest")
        )
        known = pl.concat([ingested, after])
        held_now = _assert_rows(store, known, firmware)
        assert all(held_now[e] >= at for e, at in held_live.items()), "a row went back in time"
        assert report.kept == len({str(d) for d in after["device"]})
        assert report.rows == len(held_now) + len(set(firmware) - set(held_now))
        held = held_now
        clock += timedelta(hours=36)
    assert updater.stale == updater.errors == updater.future == 0


def _cli(home: Path, *args: str) -> None:
    assert main(["--home", str(home), *args]) == 0, args


def _request(event: dict) -> dict:
    return {
        "subscriber": event["subscriber"],
        "logged_at": event["logged_at"].isoformat() + "Z",
        "minutes": event["minutes"],
        "channel": event["channel"],
        "on_mobile": event["on_mobile"],
    }


def _assert_holds(home: Path, events: pl.DataFrame, subscribers: list[int]) -> dict[int, tuple[int, dict]]:
    """The online rows of these subscribers are the feature table's latest over the ingested history and
    these (answered, not yet ingested) events; returns them."""
    with Home(home) as h:
        features = h.spec("visits").features
        history = read_snapshots(h.offline, list_snapshots(h.conn, "visits"))
        stored = h.online.read(namespace("visits", features), [str(s) for s in subscribers])
    known = pl.concat(
        [
            history,
            events.with_columns(pl.col("logged_at").dt.replace_time_zone("UTC"))
            .select(history.columns)
            .cast(history.schema),
        ]
    )
    latest = feature_rows(features, known.filter(pl.col("subscriber").is_in(subscribers)), latest_only=True)
    rows = {}
    for row in latest.iter_rows(named=True):
        at, payload = stored[str(row["subscriber"])]
        values = msgspec.json.decode(payload)
        assert at == round(row[FEATURE_TIME].timestamp() * MICROS), row["subscriber"]
        assert all(same_value(values[a.name], row[a.name]) for a in features.aggregations), (values, row)
        rows[row["subscriber"]] = (at, values)
    assert sorted(rows) == sorted(subscribers)
    return rows


def _served(url_home: Path, requests: list[dict], newest: dict[int, int]) -> None:
    # Answer the requests on a real server, and wait until its log writer moved each entity's row there.
    with running_server(url_home) as server:
        for request in requests:
            answer = server.client.post("/v1/models/visits/predict", json=request)
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 20
        with Home(url_home) as h:
            name = namespace("visits", h.spec("visits").features)
            while {int(e): at for e, (at, _) in h.online.read(name, [str(s) for s in newest]).items()} != newest:
                assert time.monotonic() < deadline, "the answered requests did not move the online rows"
                time.sleep(0.05)


def test_answered_requests_outlive_materialize_and_restart_and_the_skew_check_passes(tmp_path: Path, capsys):
    spec = write_subscriptions(tmp_path / "data", name="visits", days=12, live_days=4, per_day=250, seed=5)
    home = tmp_path / "home"
    in_production(home, spec, "history.parquet")
    live = pl.read_parquet(spec.parent / "live.parquet").sort("logged_at")
    # Two subscribers whose first three live sessions come earliest; their sessions are the requests, with a
    # stranger no history knows.
    third = (
        live.group_by("subscriber")
        .agg(pl.col("logged_at").slice(2, 1).first())
        .drop_nulls()
        .sort("logged_at", "subscriber")
    )
    caught, behind = third["subscriber"][0], third["subscriber"][1]
    served = pl.concat([live.filter(pl.col("subscriber") == s).head(3) for s in (caught, behind)])
    stranger = served.head(1).with_columns(subscriber=pl.lit(4_000_000, pl.Int64), session_id=pl.lit(-1, pl.Int64))
    served = pl.concat([served, stranger])
    newest = {
        s: round(t.replace(tzinfo=UTC).timestamp() * MICROS)
        for s, t in served.group_by("subscriber").agg(pl.col("logged_at").max()).iter_rows()
    }
    _served(home, [_request(e) for e in served.iter_rows(named=True)], newest)
    who = [caught, behind, 4_000_000]
    moved = _assert_holds(home, served, who)

    # Materializing again keeps them: the rows keep their newest event, and their counts.
    capsys.readouterr()
    _cli(home, "features", "materialize", "visits")
    assert "in 3 entities' rows" in capsys.readouterr().out
    assert _assert_holds(home, served, who) == moved
    # Seconds since last: 7.7 s after the behind subscriber's last answered session, not days since its history.
    last = served.filter(pl.col("subscriber") == behind)["logged_at"].max()
    _cli(home, "features", "show", "visits", str(behind), "--at", (last + timedelta(seconds=7.7)).isoformat() + "Z")
    shown = json.loads(capsys.readouterr().out)
    assert shown["since_last"] == pytest.approx(7.7) and shown["sessions_7d"] == moved[behind][1]["sessions_7d"]
    assert main(["--home", str(home), "features", "skew", "visits", "--sample", "1000"]) == 0
    assert "not checked: 3 entities" in capsys.readouterr().out

    # A restart: `up`'s main job materializes again, and a new server moves the kept rows on. Given the spec
    # at another path (the specs folder moved), it reads it from there, and says so.
    moved_spec = spec.with_name("visits-moved.toml")
    moved_spec.write_text(spec.read_text())
    said: list[str] = []
    with Home(home) as h:
        bring_up(h, [moved_spec], said.append)
    assert f"model 'visits' now reads its spec from {moved_spec} (it read {spec})" in said, said
    assert any("3 keep the requests answered after their last ingested event" in line for line in said), said
    assert _assert_holds(home, served, who) == moved
    later = (
        served.filter(pl.col("subscriber") == behind)
        .tail(1)
        .with_columns(pl.col("logged_at") + timedelta(hours=2), session_id=pl.lit(-2, pl.Int64))
    )
    served = pl.concat([served, later])
    _served(home, [_request(later.row(0, named=True))], {**newest, behind: newest[behind] + 2 * 3600 * MICROS})
    assert _assert_holds(home, served, who)[behind][1]["sessions_7d"] == moved[behind][1]["sessions_7d"] + 1

    # Ingest catches up for everyone but one subscriber (and the stranger): the caught-up rows are the
    # ingested history's alone (its answered sessions are in it, counted once); the other keeps its requests,
    # though other subscribers' history now runs past them, and the skew check still passes.
    cut = served["logged_at"].max() + timedelta(hours=1)
    batch = live.filter((pl.col("logged_at") <= cut) & (pl.col("subscriber") != behind))
    batch.write_parquet(tmp_path / "batch.parquet")
    _cli(home, "ingest", "visits", str(tmp_path / "batch.parquet"))
    capsys.readouterr()
    _cli(home, "features", "materialize", "visits")
    assert "in 2 entities' rows" in capsys.readouterr().out
    pending = served.filter(pl.col("subscriber") != caught)
    _assert_holds(home, pending, who)
    assert main(["--home", str(home), "features", "skew", "visits", "--sample", "1000"]) == 0
    assert "not checked: 2 entities" in capsys.readouterr().out

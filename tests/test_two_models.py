"""Two models over the same data file in one data directory: each has its own snapshots, versions,
lineage and online features, while the Parquet bytes are stored once."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from appliance.data.snapshots import find_snapshot, find_snapshots, list_snapshots
from appliance.errors import InvalidInput, NotFound
from appliance.home import Home
from appliance.spec import load_spec
from appliance.training.pipeline import train
from appliance.training.reproduce import reproduce
from storage.database import connect
from storage.metadata_schema import MIGRATIONS
from tests.conftest import SAMPLE_RECORD, cli, ok, sliced_spec

# Within the sliced history (its first 12 days), so the stored features are current.
RECORD = {**SAMPLE_RECORD, "event_time": "2026-09-12T09:30:00Z"}


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A data directory with 'fraud' and 'fraud_small' over one transactions file, both ingested,
    trained (fraud in process, fraud_small through the CLI's worker), promoted and materialized."""
    root = tmp_path_factory.mktemp("two-models")
    fraud = sliced_spec(root, days=12, eval_days=3)
    text = fraud.read_text()
    assert 'name = "fraud"' in text and "num_boost_round = 60" in text
    small = fraud.parent / "fraud_small.toml"  # beside fraud.toml: the same transactions.parquet
    small.write_text(
        text.replace('name = "fraud"', 'name = "fraud_small"', 1).replace(
            "num_boost_round = 60", "num_boost_round = 20"
        )
    )
    home, source = root / "home", str(fraud.parent / "transactions.parquet")
    ok(home, "init", "--spec", str(fraud))
    ok(home, "init", "--spec", str(small))
    ingested = {name: ok(home, "ingest", name, source) for name in ("fraud", "fraud_small")}
    with Home(home) as h:
        train(h, load_spec(fraud))
    trained = ok(home, "train", "fraud_small")
    for name in ("fraud", "fraud_small"):
        ok(home, "promote", name, "1")
        ok(home, "features", "materialize", name)
    return {"home": home, "source": source, "ingested": ingested, "trained": trained}


@pytest.fixture
def home_dir(two_models: dict, tmp_path: Path) -> Path:
    """A private copy of the two-model data directory (the conftest ``server`` fixture serves it)."""
    target = tmp_path / "home"
    shutil.copytree(two_models["home"], target)
    return target


def test_each_model_has_its_own_snapshot_of_the_shared_file(two_models, home_dir):
    for name, out in two_models["ingested"].items():
        assert "(new)" in out, (name, out)  # the second model's ingest is not "unchanged"
    assert "(unchanged)" in two_models["trained"] and "registered fraud_small v1" in two_models["trained"]
    listed = {name: ok(home_dir, "data", "list", name).splitlines() for name in ("fraud", "fraud_small")}
    for lines in listed.values():
        assert len(lines) == 2 and lines[1].endswith("v1"), lines  # its own version only
    digest = listed["fraud"][1].split()[0]
    assert listed["fraud_small"][1].split()[0] == digest

    with Home(home_dir) as home:
        rows = {m: list_snapshots(home.conn, m) for m in ("fraud", "fraud_small")}
        assert {m: [s.model for s in found] for m, found in rows.items()} == {
            "fraud": ["fraud"],
            "fraud_small": ["fraud_small"],
        }
        assert rows["fraud"][0].path == rows["fraud_small"][0].path  # one file for both
        assert len(list((home.offline.root).glob("*/snapshots/*.parquet"))) == 1
        assert [s.model for s in find_snapshots(home.conn, digest)] == ["fraud", "fraud_small"]
        assert find_snapshot(home.conn, digest, "fraud_small").model == "fraud_small"
        with pytest.raises(InvalidInput, match="belongs to models fraud, fraud_small; say which with --model"):
            find_snapshot(home.conn, digest)
        versions = {m: home.registry.version(m, 1) for m in ("fraud", "fraud_small")}
        assert versions["fraud"].data_version == versions["fraud_small"].data_version
        assert versions["fraud"].artifact_sha256 != versions["fraud_small"].artifact_sha256

    both = ok(home_dir, "data", "show", digest)
    assert "model        fraud\n" in both and "model        fraud_small\n" in both
    assert "trained      fraud v1\n" in both and "trained      fraud_small v1\n" in both
    one = ok(home_dir, "data", "show", digest, "--model", "fraud_small")
    assert "model        fraud_small" in one and "model        fraud\n" not in one
    code, _, err = cli(home_dir, "data", "show", digest, "--model", "nope")
    assert code == 1 and err.startswith("error: ") and "unknown model 'nope'" in err
    code, _, err = cli(home_dir, "data", "diff", digest, digest)
    assert code == 1 and err.startswith("error: ") and "say which with --model" in err
    assert "only in old: 0; only in new: 0" in ok(home_dir, "data", "diff", digest, digest, "--model", "fraud")


def test_a_new_batch_of_one_model_leaves_the_other_as_it_was(two_models, home_dir, tmp_path):
    batch = tmp_path / "first-days.parquet"
    source = pl.read_parquet(two_models["source"])
    source.filter(pl.col("event_time") < source["event_time"].min() + pl.duration(days=6)).write_parquet(batch)
    assert "(new)" in ok(home_dir, "ingest", "fraud", str(batch))
    fraud = ok(home_dir, "data", "list", "fraud").splitlines()
    assert len(fraud) == 3 and len(ok(home_dir, "data", "list", "fraud_small").splitlines()) == 2
    first, second = fraud[1].split()[0], fraud[2].split()[0]
    assert first in fraud[2]  # its parent is fraud's own previous snapshot
    diff = ok(home_dir, "data", "diff", first, second)  # the one model holding both is meant
    assert f"rows {pl.read_parquet(batch).height - source.height:+,}" in diff
    code, _, err = cli(home_dir, "data", "diff", first, second, "--model", "fraud_small")
    assert code == 1 and err.startswith("error: no snapshot hash starts with") and "fraud_small" in err


def test_both_models_serve_beside_each_other(server):
    c = server.client
    assert c.get("/readyz").json()["serving"] == {"fraud": 1, "fraud_small": 1}
    answers = {}
    for name in ("fraud", "fraud_small"):
        answer = c.post(f"/v1/models/{name}/predict", json=RECORD)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == name and body["version"] == 1
        answers[name] = body["probability"]
    assert answers["fraud"] != answers["fraud_small"]  # two models, not one answering for both

    for name in ("fraud", "fraud_small"):  # and the CLI, in process, scores with the same versions
        body = json.loads(ok(server.home, "predict", name, "--json", json.dumps(RECORD)))
        assert body["model"] == name and body["version"] == 1
        assert body["probability"] == pytest.approx(answers[name], abs=1e-6)


def test_the_second_model_reproduces_from_its_own_lineage(home_dir):
    with Home(home_dir) as home:
        result = reproduce(home, "fraud_small", 1)
    assert result.max_difference == 0.0


def test_old_snapshots_schema_upgrades_and_keeps_its_rows(tmp_path):
    """A database from before snapshots were keyed per model, holding what the old global key did to a
    second model (its ingest recorded against the first model's snapshot), upgrades in place."""
    db = tmp_path / "metadata.db"
    old = connect(db, [m for m in MIGRATIONS if m.version <= 5])
    old.execute("INSERT INTO models VALUES ('a', 'a.toml', 1), ('b', 'b.toml', 2)")
    columns = "hash, model, path, rows, quarantined, source, schema_json, parent, created_at"
    old.executemany(
        f"INSERT INTO snapshots ({columns}) VALUES (?, ?, ?, 10, 0, 's.parquet', '{{}}', ?, ?)",
        [("h1", "a", "a/snapshots/h1.parquet", None, 1.0), ("h2", "a", "a/snapshots/h2.parquet", "h1", 2.0)],
    )
    old.executemany(
        "INSERT INTO ingests (model, source, at, rows_read, accepted, quarantined, snapshot) "
        "VALUES (?, 's.parquet', ?, 10, 10, 0, ?)",
        [("a", 1.0, "h1"), ("a", 2.0, "h2"), ("b", 3.0, "h1"), ("b", 4.0, "h1"), ("b", 5.0, "h2")],
    )
    old.close()

    conn = connect(db, MIGRATIONS)
    assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == MIGRATIONS[-1].version
    rows = [
        tuple(r) for r in conn.execute("SELECT model, hash, path, parent FROM snapshots ORDER BY model, created_at")
    ]
    assert rows == [
        ("a", "h1", "a/snapshots/h1.parquet", None),
        ("a", "h2", "a/snapshots/h2.parquet", "h1"),
        ("b", "h1", "a/snapshots/h1.parquet", None),
        ("b", "h2", "a/snapshots/h2.parquet", "h1"),
    ]
    assert [tuple(r) for r in conn.execute("SELECT id, model, snapshot FROM ingests ORDER BY id")] == [
        (1, "a", "h1"),
        (2, "a", "h2"),
        (3, "b", "h1"),
        (4, "b", "h1"),
        (5, "b", "h2"),
    ]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.execute(
        "INSERT INTO ingests (model, source, at, rows_read, accepted, quarantined, snapshot) "
        "VALUES ('a', 's.parquet', 6.0, 10, 10, 0, 'h2')"
    )
    assert conn.execute("SELECT max(id) FROM ingests").fetchone()[0] == 6  # ids go on where they were
    with pytest.raises(sqlite3.IntegrityError):  # an ingest names a snapshot of its own model
        conn.execute(
            "INSERT INTO ingests (model, source, at, rows_read, accepted, quarantined, snapshot) "
            "VALUES ('a', 's.parquet', 7.0, 10, 10, 0, 'nope')"
        )
    assert [s.model for s in find_snapshots(conn, "h1")] == ["a", "b"]
    with pytest.raises(NotFound, match="no snapshot hash starts with 'h3'"):
        find_snapshots(conn, "h3")
    conn.close()

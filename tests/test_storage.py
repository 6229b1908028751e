"""Storage: SQLite settings and migrations, the content-addressed artifact store, the offline store."""

from __future__ import annotations

import hashlib
import sqlite3

import polars as pl
import pytest

from storage.artifacts import ArtifactStore
from storage.database import Migration, connect, migrate, schema_version, transaction
from storage.errors import ArtifactCorrupt, ArtifactMissing, SchemaTooNew
from storage.metadata_schema import MIGRATIONS
from storage.offline_store import OfflineStore


def test_new_database_gets_every_migration_and_the_settings(tmp_path):
    conn = connect(tmp_path / "metadata.db", MIGRATIONS)
    assert schema_version(conn) == MIGRATIONS[-1].version
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"models", "model_versions", "aliases", "promotions", "audit_log", "runs", "snapshots"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert migrate(conn, MIGRATIONS) == []  # a second run applies nothing


def test_migrations_apply_in_order_and_only_once(tmp_path):
    first = [Migration(1, "t", "CREATE TABLE t (a INTEGER);")]
    conn = connect(tmp_path / "x.db", first)
    conn.execute("INSERT INTO t VALUES (1)")
    later = first + [Migration(2, "add b", "ALTER TABLE t ADD COLUMN b TEXT;\nUPDATE t SET b = 'x';")]
    assert migrate(conn, later) == [2]
    assert conn.execute("SELECT a, b FROM t").fetchall()[0][:] == (1, "x")


def test_a_missing_lower_version_is_applied_after_a_higher_one(tmp_path):
    one = Migration(1, "t", "CREATE TABLE t (a INTEGER);")
    three = Migration(3, "v", "CREATE TABLE v (a INTEGER);")
    conn = connect(tmp_path / "x.db", [one, three])
    two = Migration(2, "u", "CREATE TABLE u (a INTEGER);")
    assert migrate(conn, [one, two, three]) == [2]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchone() is not None


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path):
    conn = connect(tmp_path / "x.db", [Migration(1, "t", "CREATE TABLE t (a INTEGER);")])
    broken = [Migration(1, "t", ""), Migration(2, "bad", "CREATE TABLE u (a);\nINSERT INTO nowhere VALUES (1);")]
    with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
        migrate(conn, broken)
    assert schema_version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchone() is None


def test_a_database_from_a_newer_program_is_refused(tmp_path):
    conn = connect(
        tmp_path / "x.db", [Migration(1, "a", "CREATE TABLE a (x);"), Migration(2, "b", "CREATE TABLE b (x);")]
    )
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade"):
        connect(tmp_path / "x.db", [Migration(1, "a", "CREATE TABLE a (x);")])


def test_transaction_rolls_back_on_error(tmp_path):
    conn = connect(tmp_path / "x.db", [Migration(1, "t", "CREATE TABLE t (a INTEGER);")])
    with pytest.raises(RuntimeError):
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0


def test_artifacts_are_named_by_hash_stored_once_and_verified(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    data = b"model bytes" * 1000
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.path(digest).name == digest
    assert store.put(data) == digest
    assert store.get(digest) == data
    assert not [p for p in store.root.rglob(".tmp-*")]  # no temp file left behind


def test_a_truncated_artifact_is_refused(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.put(b"0123456789" * 100)
    store.path(digest).write_bytes(b"0123456789" * 50)
    with pytest.raises(ArtifactCorrupt, match="corrupt or truncated"):
        store.get(digest)
    # putting the right bytes again repairs it
    store.put(b"0123456789" * 100)
    assert store.get(digest) == b"0123456789" * 100


def test_a_missing_artifact_says_what_to_do(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ArtifactMissing, match="backup"):
        store.get("0" * 64)
    with pytest.raises(ArtifactMissing):
        store.get("../../etc/passwd")


def test_offline_store_dedupes_identical_content(tmp_path):
    store = OfflineStore(tmp_path / "offline")
    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    d1, p1 = store.write("m/snapshots", frame)
    d2, p2 = store.write("m/snapshots", frame.clone())
    assert (d1, p1) == (d2, p2)
    assert len(list((tmp_path / "offline" / "m" / "snapshots").iterdir())) == 1
    d3, _ = store.write("m/snapshots", frame.with_columns(a=pl.col("a") + 1))
    assert d3 != d1
    assert pl.read_parquet(p1).equals(frame)

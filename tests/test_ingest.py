"""Ingestion: every contract rule, quarantine reconciliation, idempotent re-ingest, corrupt files, the CLI."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from appliance.data.contract import load_contract
from appliance.data.ingest import ingest
from appliance.data.quarantine import quarantine
from appliance.data.snapshots import list_snapshots, read_snapshots
from appliance.errors import InvalidInput
from appliance.home import Home
from appliance.spec import load_spec
from tests.conftest import small_spec
from tests.own_data import spec_text
from tests.test_cli import appliance

GOOD = [f"{i},2026-01-01T{i:02d}:30:00Z,{i}.5,a,true" for i in range(10, 20)]
BAD = {  # row -> the reason it must be quarantined with
    "1,2026-01-01T01:00:00Z,-1,a,true": "amount: below 0.0",
    "2,2026-01-01T02:00:00Z,101,b,false": "amount: above 100.0",
    "3,2026-01-01T03:00:00Z,5,z,false": "kind: not an allowed value",
    "4,2026-01-01T04:00:00Z,,a,true": "amount: null",
    "5,2026-01-01T05:00:00Z,abc,a,true": "amount: not a float",
    "6,not-a-time,5,a,true": "event_time: not a timestamp",
    "7,2026-01-01T07:00:00Z,5,b,maybe": "flag: not a boolean",
    "8,2026-01-01T08:00:00Z,5,a,true": "id: duplicate",
    "8,2026-01-01T08:30:00Z,6,b,false": "id: duplicate",
}
HEADER = "id,event_time,amount,kind,flag"
AS_OF = datetime(2026, 1, 3, tzinfo=UTC)


def rules_contract(volume: int) -> str:
    """The contract with every kind of rule, its [volume] table (added last) asking ``volume`` rows a day."""
    return spec_text("ingest_rules", "contract.toml") + f"\n[volume]\nmin_rows_per_day = {volume}\n"


@pytest.fixture
def home(tmp_path):
    (tmp_path / "contract.toml").write_text(rules_contract(volume=4))
    with Home(tmp_path / "home") as home:
        home.registry.add_model("t", str(tmp_path / "spec.toml"))
        yield home


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def _ingest(home: Home, path: Path, volume: int = 4):
    contract_path = home.root.parent / "contract.toml"
    contract_path.write_text(rules_contract(volume))
    return ingest(home.conn, home.offline, "t", load_contract(contract_path), path, as_of=AS_OF)


def _nothing_written(home: Home) -> bool:
    return not list_snapshots(home.conn, "t") and home.conn.execute("SELECT count(*) FROM ingests").fetchone()[0] == 0


def test_every_row_rule_quarantines_with_its_reason_and_the_report_reconciles(home, tmp_path):
    report = _ingest(home, _write(tmp_path / "batch.csv", GOOD + list(BAD)))
    assert (report.rows_read, report.accepted, report.quarantined) == (19, 10, 9)
    assert report.rows_read == report.accepted + report.quarantined
    view = quarantine(home.conn, home.offline, "t", limit=50)
    assert view.rows == 9 and sum(n for _, n in view.by_reason) == 9
    reasons = dict(
        zip(view.sample["id"].cast(pl.String) + "@" + view.sample["event_time"].cast(pl.String), view.sample["reason"])
    )
    for line, reason in BAD.items():
        row_id, at = line.split(",")[:2]
        assert reason in reasons[f"{row_id}@{at}"], (line, reasons[f"{row_id}@{at}"])
    assert view.sample["quarantine_file"].str.ends_with(".parquet").all()
    only_amount = quarantine(home.conn, home.offline, "t", reason="amount:")
    assert only_amount.rows == 4 and set(only_amount.sample["reason"].str.slice(0, 7)) == {"amount:"}
    # freshness: the newest accepted event is older than the contract allows on AS_OF
    assert any(w.startswith("stale:") for w in report.warnings)
    ingest_row = home.conn.execute("SELECT * FROM ingests").fetchone()
    assert (ingest_row["rows_read"], ingest_row["quarantined"]) == (19, 9) and "stale" in ingest_row["warnings_json"]


def test_reingesting_identical_content_makes_no_new_snapshot(home, tmp_path):
    path = _write(tmp_path / "batch.csv", GOOD + list(BAD))
    first, second = _ingest(home, path), _ingest(home, path)
    assert first.new_snapshot and not second.new_snapshot
    assert first.snapshot.hash == second.snapshot.hash and len(list_snapshots(home.conn, "t")) == 1
    assert quarantine(home.conn, home.offline, "t").rows == 9  # the same quarantine file is read once
    assert len(list((home.offline.root / "t" / "snapshots").glob("*.parquet"))) == 1


@pytest.mark.parametrize(
    "lines, volume, message",
    [
        ([line.rsplit(",", 1)[0] for line in GOOD], 4, "missing column(s) ['flag']"),
        ([f"{i},2026-01-01T00:00:00Z,lots,a,true" for i in range(10)], 4, "column 'amount'"),
        (GOOD, 100, "far below the contract's 100"),
        # Unix seconds where the contract says timestamp: read as microseconds they would all date to January 1970
        ([f"{i},{1778630801 + i},12.5,a,true" for i in range(10)], 4, "convert the numbers first"),
    ],
)
def test_batch_level_failures_stop_the_ingest_and_write_nothing(home, tmp_path, lines, volume, message):
    header = HEADER if "flag" not in message else HEADER.rsplit(",", 1)[0]
    path = tmp_path / "batch.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    with pytest.raises(InvalidInput, match=re.escape(message)):
        _ingest(home, path, volume=volume)
    assert _nothing_written(home)


def test_volume_a_little_below_the_contract_is_a_warning(home, tmp_path):
    report = _ingest(home, _write(tmp_path / "batch.csv", GOOD), volume=15)
    assert report.accepted == 10 and any("below the contract's 15" in w for w in report.warnings)


def test_a_truncated_file_is_a_clear_error_and_writes_nothing(home, tmp_path):
    frame = pl.read_csv(_write(tmp_path / "batch.csv", GOOD))
    frame.write_parquet(tmp_path / "batch.parquet")
    data = (tmp_path / "batch.parquet").read_bytes()
    (tmp_path / "batch.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="malformed or truncated"):
        _ingest(home, tmp_path / "batch.parquet")
    assert _nothing_written(home)


def test_cli_ingest_data_and_features_on_the_sample(home_dir, tmp_path):
    live = pl.read_parquet(Path(__file__).resolve().parents[1] / "sample_data" / "live.parquet")
    day = live.filter(pl.col("event_time") < datetime(2026, 10, 17, tzinfo=UTC))
    # Two broken rows: a negative amount and an unknown category.
    broken = day.with_columns(
        amount=pl.when(pl.int_range(pl.len()) == 0).then(-5.0).otherwise(pl.col("amount")),
        merchant_category=pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit("casino"))
        .otherwise(pl.col("merchant_category")),
    )
    broken.write_csv(tmp_path / "day.csv")
    ingested = appliance(home_dir, "ingest", "fraud", str(tmp_path / "day.csv"))
    assert ingested.returncode == 0, ingested.stderr
    assert f"read {day.height:,} rows: {day.height - 2:,} accepted, 2 quarantined" in ingested.stdout
    assert "(new)" in ingested.stdout and "warning: stale" in ingested.stdout
    again = appliance(home_dir, "ingest", "fraud", str(tmp_path / "day.csv"))
    assert "identical content: unchanged" in again.stdout

    quarantined = appliance(home_dir, "data", "quarantine", "fraud")
    assert "2 quarantined rows" in quarantined.stdout
    assert "amount: below 0.01" in quarantined.stdout
    assert "merchant_category: not an allowed value" in quarantined.stdout

    listed = appliance(home_dir, "data", "list", "fraud").stdout.splitlines()
    assert len(listed) == 3, listed
    first, second = listed[1].split()[0], listed[2].split()[0]
    assert listed[1].endswith("v1, v2") and listed[2].endswith("-")  # versions trained on each snapshot
    assert first in listed[2]  # the new snapshot's parent
    shown = appliance(home_dir, "data", "show", first).stdout
    assert "trained      fraud v1, fraud v2" in shown and "amount: Float64" in shown
    diff = appliance(home_dir, "data", "diff", first, second).stdout
    assert f"rows {day.height - 2 - 136_721:+,}" in diff and f"only in new: {day.height - 2:,}" in diff

    stale = appliance(home_dir, "features", "skew", "fraud", "--sample", "50")
    assert stale.returncode == 1 and "features materialize" in stale.stdout
    materialized = appliance(home_dir, "features", "materialize", "fraud")
    assert re.search(r"materialized 5,000 entities .* newest event 2026-10-16T23:", materialized.stdout)
    clean = appliance(home_dir, "features", "skew", "fraud", "--sample", "50")
    assert clean.returncode == 0 and "50 entities × 9 features" in clean.stdout and ": 0 mismatch" in clean.stdout
    shown = appliance(home_dir, "features", "show", "fraud", "u00042", "--at", "2026-10-17T00:00:00Z")
    assert '"tx_count_30d"' in shown.stdout and '"country"' in shown.stdout

    errors = [
        (("data", "show", "ffffffff"), "no snapshot hash starts with"),
        (("ingest", "fraud", str(tmp_path / "missing.csv")), "does not exist"),
        (("data", "quarantine", "nope"), "unknown model 'nope'"),
    ]
    for args, message in errors:
        result = appliance(home_dir, *args)
        assert result.returncode == 1 and result.stderr.startswith("error: ") and message in result.stderr


def test_overlapping_batches_count_each_row_once(tmp_path):
    spec = load_spec(small_spec(tmp_path))
    source = pl.read_parquet(spec.resolve(spec.data.source)).head(4000)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    source.head(3000).write_parquet(first)
    source.tail(2000).write_parquet(second)  # 1,000 rows in both exports
    with Home(tmp_path / "home") as home:
        home.add_model(spec)
        contract = load_contract(spec.resolve(spec.data.contract))
        ingest(home.conn, home.offline, spec.name, contract, first)
        ingest(home.conn, home.offline, spec.name, contract, second)
        events = read_snapshots(home.offline, list_snapshots(home.conn, spec.name))
    assert events.height == 4000 and events["transaction_id"].n_unique() == 4000

"""`appliance init --from`: a spec and a data contract drafted from data sets unlike the sample."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from appliance.cli import main
from appliance.data.contract import load_contract
from appliance.home import Home
from appliance.spec import load_spec
from appliance.training.pipeline import train


def _times(rng: np.random.Generator, start: datetime, days: int, n: int) -> list[datetime]:
    return [start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, days * 86400, n))]


def orders_parquet(path: Path, days: int = 20, per_day: int = 80) -> Path:
    """Integer order ids and store ids (the entity), integer region codes with gaps, 0/1 flags."""
    rng = np.random.default_rng(1)
    n = days * per_day
    promo = rng.integers(0, 2, n)
    basket = np.round(rng.gamma(2.0, 30.0, n), 2)
    region = rng.choice([3, 7, 12, 40], n)
    logit = -2.5 + 2.0 * promo + 0.015 * basket + 1.5 * (region == 40)
    pl.DataFrame({
        "order_id": np.arange(100_000, 100_000 + n), "store_id": rng.integers(1, 31, n),
        "ordered_at": _times(rng, datetime(2026, 3, 1), days, n), "region_code": region.astype(np.int32),
        "is_promo": promo.astype(np.int8), "basket": basket, "items": rng.integers(1, 31, n),
        "returned": (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
    }).write_parquet(path)
    return path


def readings_csv(path: Path, days: int = 14, per_day: int = 50) -> Path:
    """Text ISO timestamps, no entity, string ids, text "true"/"false", a 0/1 target."""
    rng = np.random.default_rng(2)
    n = days * per_day
    status = rng.choice(["ok", "warn", "fault"], n, p=[0.7, 0.2, 0.1])
    temperature = np.round(rng.normal(60, 8, n), 1)
    failed = rng.uniform(size=n) < np.where(status == "fault", 0.6, 0.1) + (temperature > 70) * 0.2
    pl.DataFrame({
        "reading_id": [f"r{i:05d}" for i in range(n)],
        "created_at": [t.strftime("%Y-%m-%dT%H:%M:%SZ")
                       for t in _times(rng, datetime(2026, 5, 1, tzinfo=timezone.utc), days, n)],
        "temperature": temperature, "status": status, "verified": rng.choice(["true", "false"], n),
        "line": rng.integers(1, 4, n), "failed": failed.astype(int),
    }).write_csv(path)
    return path


def accounts_parquet(path: Path, days: int = 12, per_day: int = 60) -> Path:
    """String entity keys with nulls, zoned times, a date column, nulls in features, free text, and a
    true/false target with unlabelled rows."""
    rng = np.random.default_rng(3)
    n = days * per_day
    times = _times(rng, datetime(2026, 7, 1, tzinfo=timezone.utc), days, n)
    channel = [None if rng.uniform() < 0.2 else c for c in rng.choice(["web", "app", "store"], n)]
    pl.DataFrame({
        "account": [None if rng.uniform() < 0.05 else f"acct-{k:03d}" for k in rng.integers(0, 80, n)],
        "seen": times, "signup": [t.date() for t in times], "channel": channel,
        "amount": [None if rng.uniform() < 0.15 else round(float(a), 2) for a in rng.lognormal(3, 1, n)],
        "note": [None if i % 3 else f"called on day {i}" for i in range(n)],
        "churned": [None if rng.uniform() < 0.1 else bool(rng.uniform() < (0.6 if c == "store" else 0.2))
                    for c in channel],
    }).with_columns(pl.col("seen").dt.convert_time_zone("America/New_York")).write_parquet(path)
    return path


def run(home: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ingest_accepts_all(home: Path, capsys: pytest.CaptureFixture, model: str, data: Path, rows: int) -> None:
    code, out, err = run(home, capsys, "ingest", model, str(data))
    assert code == 0, err
    assert f"read {rows:,} rows: {rows:,} accepted, 0 quarantined" in out


def fields(contract_path: Path) -> dict:
    return {f.name: f for f in load_contract(contract_path).fields}


def test_parquet_with_integer_keys_codes_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = orders_parquet(tmp_path / "orders.parquet")
    code, out, err = run(tmp_path / "home", capsys, "init", "--from", str(data), "--target", "returned",
                         "--entity", "store_id", "--out", str(tmp_path / "specs"))
    assert code == 0, err
    spec = load_spec(tmp_path / "specs" / "orders.toml")
    assert spec.features.entity_key == "store_id" and spec.features.event_time == "ordered_at"
    assert [(f.name, f.type) for f in spec.features.request] == [
        ("region_code", "category"), ("is_promo", "boolean"), ("basket", "float"), ("items", "integer")]
    assert spec.target.column == "returned"
    assert spec.validation.min_auc == 0.6 and spec.validation.min_recall == 0.0 and spec.validation.segments == []
    assert 1 <= spec.training.eval_days < 20
    assert spec.resolve(spec.data.source) == data.resolve()
    rules = fields(spec.resolve(spec.data.contract))
    assert rules["order_id"].unique and rules["order_id"].type == "integer"
    assert rules["store_id"].type == "integer" and not rules["store_id"].unique
    assert rules["ordered_at"].type == "timestamp" and not rules["ordered_at"].nullable
    assert rules["region_code"].allowed_values == [3, 7, 12, 40]
    assert rules["is_promo"].type == "boolean"
    assert rules["basket"].min == 0 and rules["basket"].max >= 376
    assert rules["returned"].type == "integer" and rules["returned"].allowed_values == [0, 1]
    contract = load_contract(spec.resolve(spec.data.contract))
    assert contract.contract.event_time == "ordered_at" and contract.volume.min_rows_per_day >= 1
    assert contract.freshness.max_staleness == "3d"
    # one line per assumption: each column, then volume, freshness, training, validation
    assert "assumed column 'order_id': integer" in out and "an identifier, left out of the features" in out
    assert "assumed column 'store_id': integer, the entity key" in out
    for what in ("volume: min_rows_per_day", "freshness: max_staleness 3d", "training: eval_days",
                 "validation: min_auc 0.6"):
        assert f"assumed {what}" in out
    with Home(tmp_path / "home") as home:
        assert [m.name for m in home.registry.models()] == ["orders"]
    ingest_accepts_all(tmp_path / "home", capsys, "orders", data, 1600)


def test_drafted_spec_trains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = orders_parquet(tmp_path / "orders.parquet")
    home = tmp_path / "home"
    assert run(home, capsys, "init", "--from", str(data), "--target", "returned", "--entity", "store_id",
               "--out", str(tmp_path))[0] == 0
    with Home(home) as opened:  # the pipeline `appliance train` runs, in this process (no worker start-up)
        outcome = train(opened, load_spec(tmp_path / "orders.toml"))
    assert outcome.gates.passed, [c.detail for c in outcome.gates.checks if not c.passed]
    assert outcome.version.version == 1


def test_csv_with_text_times_and_no_entity(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = readings_csv(tmp_path / "readings.csv")
    monkeypatch.chdir(tmp_path)  # no --out: the files go to the current folder
    code, out, err = run(tmp_path / "home", capsys, "init", "--from", "readings.csv", "--target", "failed")
    assert code == 0, err
    spec = load_spec(tmp_path / "readings.toml")
    assert spec.features.entity_key is None and spec.features.event_time == "created_at"
    assert spec.data.source == "readings.csv" and spec.data.contract == "readings.contract.toml"
    assert [(f.name, f.type) for f in spec.features.request] == [
        ("temperature", "float"), ("status", "category"), ("verified", "boolean"), ("line", "integer")]
    rules = fields(tmp_path / "readings.contract.toml")
    assert rules["reading_id"].type == "string" and rules["reading_id"].unique
    assert rules["created_at"].type == "timestamp"
    assert rules["status"].allowed_values == ["fault", "ok", "warn"]
    assert rules["verified"].type == "boolean"
    assert rules["failed"].allowed_values == [0, 1]
    assert "assumed column 'created_at': timestamp (text that parses as ISO 8601 times" in out
    ingest_accepts_all(tmp_path / "home", capsys, "readings", data, 700)


def test_string_keys_with_nulls(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = accounts_parquet(tmp_path / "accounts.parquet")
    code, out, err = run(tmp_path / "home", capsys, "init", "--from", str(data), "--target", "churned",
                         "--entity", "account", "--time", "seen", "--name", "churn", "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "churn.toml")
    assert spec.name == "churn" and spec.features.entity_key == "account"
    assert spec.data.source == "accounts.parquet"
    assert [(f.name, f.type) for f in spec.features.request] == [("channel", "category"), ("amount", "float")]
    # channel is null in about a fifth of the rows: the default 10 % would stop training
    assert 0.2 < spec.validation.max_missing_share <= 0.5
    rules = fields(tmp_path / "churn.contract.toml")
    assert rules["account"].type == "string" and rules["account"].nullable
    assert rules["channel"].nullable and rules["channel"].allowed_values == ["app", "store", "web"]
    assert rules["amount"].nullable and rules["amount"].min == 0
    assert rules["signup"].type == "timestamp" and rules["note"].type == "string"
    assert rules["churned"].type == "boolean" and rules["churned"].nullable
    assert "assumed column 'note'" in out and "free text, left out of the features" in out
    assert "assumed column 'signup': timestamp" in out and "not a feature type" in out
    ingest_accepts_all(tmp_path / "home", capsys, "churn", data, 720)


def test_folder_with_categorical_text_flags_and_a_float_target(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    n = 300
    for part in range(2):
        pl.DataFrame({
            "when": [(datetime(2026, 1, 1) + timedelta(hours=i + part * n)).strftime("%Y-%m-%d %H:%M:%S")
                     for i in range(n)],
            "kind": pl.Series(["a", "b", "c"] * (n // 3)).cast(pl.Categorical),
            "flag": ["True", "False", "true"] * (n // 3),
            "y": [None if i % 10 == 0 else float(i % 2) for i in range(n)],  # pandas-style 0.0/1.0 with gaps
        }).write_parquet(folder / f"part-{part}.parquet")
    code, _, err = run(tmp_path / "home", capsys, "init", "--from", str(folder), "--target", "y",
                       "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "exports.toml")
    assert spec.data.source == "exports" and spec.features.event_time == "when"
    assert [(f.name, f.type) for f in spec.features.request] == [("kind", "category"), ("flag", "boolean")]
    rules = fields(tmp_path / "exports.contract.toml")
    assert rules["kind"].allowed_values == ["a", "b", "c"]
    assert rules["y"].type == "integer" and rules["y"].nullable and rules["y"].allowed_values == [0, 1]
    ingest_accepts_all(tmp_path / "home", capsys, "exports", folder, 600)


def assert_refused(tmp_path: Path, code: int, err: str, *words: str) -> None:
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for word in words:
        assert word in err
    with Home(tmp_path / "home") as home:
        assert home.registry.models() == []


def test_missing_target_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = orders_parquet(tmp_path / "orders.parquet", days=3)
    code, _, err = run(tmp_path / "home", capsys, "init", "--from", str(data), "--target", "refunded",
                       "--out", str(tmp_path / "specs"))
    assert_refused(tmp_path, code, err, "no column 'refunded'", "--target", "returned")
    assert not (tmp_path / "specs").exists()


def test_non_binary_target(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = readings_csv(tmp_path / "readings.csv", days=3)
    code, _, err = run(tmp_path / "home", capsys, "init", "--from", str(data), "--target", "status",
                       "--out", str(tmp_path))
    assert_refused(tmp_path, code, err, "only binary targets", "'fault', 'ok', 'warn'")
    assert not (tmp_path / "readings.toml").exists()


def test_existing_files_are_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = readings_csv(tmp_path / "readings.csv", days=3)
    (tmp_path / "readings.toml").write_text("# mine\n")
    code, _, err = run(tmp_path / "home", capsys, "init", "--from", str(data), "--target", "failed",
                       "--out", str(tmp_path))
    assert_refused(tmp_path, code, err, "readings.toml already exists", "--out")
    assert (tmp_path / "readings.toml").read_text() == "# mine\n"
    assert not (tmp_path / "readings.contract.toml").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["readings.csv", "readings.toml"]


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "export.parquet"
    data.write_bytes(b"not a parquet file at all")
    code, _, err = run(tmp_path / "home", capsys, "init", "--from", str(data), "--target", "y",
                       "--out", str(tmp_path))
    assert_refused(tmp_path, code, err, "export.parquet could not be read")
    assert not (tmp_path / "export.toml").exists()


def test_no_time_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "flat.csv"
    data.write_text("a,b,y\n1,x,0\n2,y,1\n3,x,0\n")
    code, _, err = run(tmp_path / "home", capsys, "init", "--from", str(data), "--target", "y",
                       "--out", str(tmp_path))
    assert_refused(tmp_path, code, err, "time column is required", "--time")


def test_flags_that_need_from(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(tmp_path / "home", capsys, "init", "--target", "y")
    assert code == 1 and "--target goes with --from" in err
    with pytest.raises(SystemExit):
        main(["--home", str(tmp_path / "home"), "init", "--spec", "x.toml", "--from", "y.csv"])


def test_a_registered_name_is_not_drafted_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = readings_csv(tmp_path / "readings.csv", days=3)
    home = tmp_path / "home"
    assert run(home, capsys, "init", "--from", str(data), "--target", "failed", "--out", str(tmp_path / "a"))[0] == 0
    code, _, err = run(home, capsys, "init", "--from", str(data), "--target", "failed", "--out", str(tmp_path / "b"))
    assert code == 1 and "model 'readings' is already registered" in err and "--name" in err
    assert not (tmp_path / "b").exists()

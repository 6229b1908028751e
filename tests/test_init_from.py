"""`appliance init --from`: a spec and a data contract drafted from data sets unlike the sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from appliance.cli import main
from appliance.data.contract import load_contract
from appliance.data.declared import model_task
from appliance.home import Home
from appliance.spec import load_spec
from appliance.task import Task
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
    pl.DataFrame(
        {
            "order_id": np.arange(100_000, 100_000 + n),
            "store_id": rng.integers(1, 31, n),
            "ordered_at": _times(rng, datetime(2026, 3, 1), days, n),
            "region_code": region.astype(np.int32),
            "is_promo": promo.astype(np.int8),
            "basket": basket,
            "items": rng.integers(1, 31, n),
            "returned": (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
        }
    ).write_parquet(path)
    return path


def readings_csv(path: Path, days: int = 14, per_day: int = 50) -> Path:
    """Text ISO timestamps, no entity, string ids, text "true"/"false", a 0/1 target."""
    rng = np.random.default_rng(2)
    n = days * per_day
    status = rng.choice(["ok", "warn", "fault"], n, p=[0.7, 0.2, 0.1])
    temperature = np.round(rng.normal(60, 8, n), 1)
    failed = rng.uniform(size=n) < np.where(status == "fault", 0.6, 0.1) + (temperature > 70) * 0.2
    pl.DataFrame(
        {
            "reading_id": [f"r{i:05d}" for i in range(n)],
            "created_at": [
                t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in _times(rng, datetime(2026, 5, 1, tzinfo=UTC), days, n)
            ],
            "temperature": temperature,
            "status": status,
            "verified": rng.choice(["true", "false"], n),
            "line": rng.integers(1, 4, n),
            "failed": failed.astype(int),
        }
    ).write_csv(path)
    return path


def accounts_parquet(path: Path, days: int = 12, per_day: int = 60) -> Path:
    """String entity keys with nulls, zoned times, a date column, nulls in features, free text, and a
    true/false target with unlabelled rows."""
    rng = np.random.default_rng(3)
    n = days * per_day
    times = _times(rng, datetime(2026, 7, 1, tzinfo=UTC), days, n)
    channel = [None if rng.uniform() < 0.2 else c for c in rng.choice(["web", "app", "store"], n)]
    pl.DataFrame(
        {
            "account": [None if rng.uniform() < 0.05 else f"acct-{k:03d}" for k in rng.integers(0, 80, n)],
            "seen": times,
            "signup": [t.date() for t in times],
            "channel": channel,
            "amount": [None if rng.uniform() < 0.15 else round(float(a), 2) for a in rng.lognormal(3, 1, n)],
            "note": [None if i % 3 else f"called on day {i}" for i in range(n)],
            "churned": [
                None if rng.uniform() < 0.1 else bool(rng.uniform() < (0.6 if c == "store" else 0.2)) for c in channel
            ],
        }
    ).with_columns(pl.col("seen").dt.convert_time_zone("America/New_York")).write_parquet(path)
    return path


def tiers_csv(path: Path, days: int = 15, per_day: int = 60) -> Path:
    """A loyalty tier per customer visit, as text classes ('bronze', 'silver', 'gold'), from spend and
    visits; string customer keys, text times with an offset, a text region."""
    rng = np.random.default_rng(4)
    n = days * per_day
    spend = np.round(rng.gamma(2.0, 150.0, n), 2)
    visits = rng.integers(0, 25, n)
    score = np.log1p(spend) + 0.08 * visits + rng.normal(0, 0.4, n)
    tier = np.where(
        score < np.quantile(score, 0.5), "bronze", np.where(score < np.quantile(score, 0.85), "silver", "gold")
    )
    pl.DataFrame(
        {
            "customer": [f"cust-{k:04d}" for k in rng.integers(0, 400, n)],
            "visited": [t.strftime("%Y-%m-%dT%H:%M:%S+02:00") for t in _times(rng, datetime(2026, 4, 1), days, n)],
            "spend_90d": spend,
            "visits": visits,
            "region": rng.choice(["north", "south", "east", "west"], n),
            "tier": tier,
        }
    ).write_csv(path)
    return path


def faults_parquet(path: Path, days: int = 12, per_day: int = 70) -> Path:
    """A pump's fault code 0..3 (0: none) from vibration and pressure, some readings not yet diagnosed
    (null codes); integer pump ids as the entity."""
    rng = np.random.default_rng(5)
    n = days * per_day
    vibration = np.round(rng.lognormal(0.5, 0.5, n), 3)
    pressure = np.round(rng.normal(6.0, 1.2, n), 2)
    code = np.select([vibration > 3.2, pressure < 4.6, pressure > 7.6], [3, 1, 2], 0)
    noisy = np.where(rng.uniform(size=n) < 0.1, rng.integers(0, 4, n), code)
    pl.DataFrame(
        {
            "pump": rng.integers(1, 41, n),
            "read_at": _times(rng, datetime(2026, 6, 1), days, n),
            "vibration": vibration,
            "pressure": pressure,
            "fault": pl.Series([None if rng.uniform() < 0.05 else int(c) for c in noisy], dtype=pl.Int64),
        }
    ).write_parquet(path)
    return path


def listings_parquet(path: Path, days: int = 20, per_day: int = 70) -> Path:
    """Used-car listings and their asking price: a right-skewed float, from age, mileage and make;
    zoned times, a text make."""
    rng = np.random.default_rng(6)
    n = days * per_day
    make = rng.choice(["fiat", "skoda", "volvo", "audi", "lexus"], n, p=[0.3, 0.3, 0.2, 0.15, 0.05])
    age = rng.integers(0, 16, n)
    mileage = np.round(age * rng.gamma(4.0, 3500.0, n) + rng.uniform(0, 5000, n), 0)
    premium = np.select([make == "audi", make == "lexus", make == "volvo"], [0.5, 0.8, 0.3], 0.0)
    price = np.round(np.exp(9.9 + premium - 0.11 * age - 2e-6 * mileage + rng.normal(0, 0.25, n)), 2)
    pl.DataFrame(
        {
            "listed_at": _times(rng, datetime(2026, 2, 1, tzinfo=UTC), days, n),
            "make": make,
            "age_years": age,
            "mileage_km": mileage,
            "price": price,
            "days_listed": rng.negative_binomial(2, 0.05, n),  # whole numbers, many of them: a quantity
        }
    ).write_parquet(path)
    return path


def held_out_days(spec_path: Path, data: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The drafted spec's split of ``data``: the labelled rows before its last eval_days days, and on them."""
    spec = load_spec(spec_path)
    day = pl.col(spec.features.event_time).dt.truncate("1d")
    labelled = data.filter(pl.col(spec.target.column).is_not_null()).with_columns(_day=day)
    cutoff = labelled["_day"].max() - timedelta(days=spec.training.eval_days - 1)
    return labelled.filter(pl.col("_day") < cutoff), labelled.filter(pl.col("_day") >= cutoff)


def run(home: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def init_from(home: Path, capsys: pytest.CaptureFixture, data: Path | str, *args: str) -> tuple[int, str, str]:
    """``appliance init --from DATA ARGS``: a spec and a contract drafted from ``data``."""
    return run(home, capsys, "init", "--from", str(data), *args)


def ingest_accepts_all(home: Path, capsys: pytest.CaptureFixture, model: str, data: Path, rows: int) -> None:
    code, out, err = run(home, capsys, "ingest", model, str(data))
    assert code == 0, err
    assert f"read {rows:,} rows: {rows:,} accepted, 0 quarantined" in out


def drafted_features(spec) -> str:
    """The request features a draft chose, in order: "name type, name type"."""
    return ", ".join(f"{f.name} {f.type}" for f in spec.features.request)


def fields(contract_path: Path) -> dict:
    return {f.name: f for f in load_contract(contract_path).fields}


def test_parquet_with_integer_keys_codes_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = orders_parquet(tmp_path / "orders.parquet")
    options = "--target returned --entity store_id".split()
    code, out, err = init_from(tmp_path / "home", capsys, data, *options, "--out", str(tmp_path / "specs"))
    assert code == 0, err
    spec = load_spec(tmp_path / "specs" / "orders.toml")
    assert spec.features.entity_key == "store_id" and spec.features.event_time == "ordered_at"
    assert drafted_features(spec) == "region_code category, is_promo boolean, basket float, items integer"
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
    for what in (
        "volume: min_rows_per_day",
        "freshness: max_staleness 3d",
        "training: eval_days",
        "validation: min_auc 0.6",
    ):
        assert f"assumed {what}" in out
    # about 80 orders a day: a daily window could never be judged, and the draft says how to widen it
    assert "under min_window_rows 200, so daily windows would be reported but never alert" in out
    assert 'set [monitoring] window = "3d" (about 2' in out
    with Home(tmp_path / "home") as home:
        assert [m.name for m in home.registry.models()] == ["orders"]
    ingest_accepts_all(tmp_path / "home", capsys, "orders", data, 1600)


def test_drafted_spec_trains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = orders_parquet(tmp_path / "orders.parquet")
    home = tmp_path / "home"
    assert init_from(home, capsys, data, "--target", "returned", "--entity", "store_id", "--out", str(tmp_path))[0] == 0
    with Home(home) as opened:  # the pipeline `appliance train` runs, in this process (no worker start-up)
        outcome = train(opened, load_spec(tmp_path / "orders.toml"))
    assert outcome.gates.passed, [c.detail for c in outcome.gates.checks if not c.passed]
    assert outcome.version.version == 1


def test_csv_with_text_times_and_no_entity(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = readings_csv(tmp_path / "readings.csv")
    monkeypatch.chdir(tmp_path)  # no --out: the files go to the current folder
    code, out, err = init_from(tmp_path / "home", capsys, "readings.csv", "--target", "failed")
    assert code == 0, err
    spec = load_spec(tmp_path / "readings.toml")
    assert spec.features.entity_key is None and spec.features.event_time == "created_at"
    assert spec.data.source == "readings.csv" and spec.data.contract == "readings.contract.toml"
    assert drafted_features(spec) == "temperature float, status category, verified boolean, line integer"
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
    options = "--target churned --entity account --time seen --name churn".split()
    code, out, err = init_from(tmp_path / "home", capsys, data, *options, "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "churn.toml")
    assert spec.name == "churn" and spec.features.entity_key == "account"
    assert spec.data.source == "accounts.parquet"
    assert drafted_features(spec) == "channel category, amount float"
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


def test_folder_with_categorical_text_flags_and_a_float_target(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    n = 300
    for part in range(2):
        pl.DataFrame(
            {
                "when": [
                    (datetime(2026, 1, 1) + timedelta(hours=i + part * n)).strftime("%Y-%m-%d %H:%M:%S")
                    for i in range(n)
                ],
                "kind": pl.Series(["a", "b", "c"] * (n // 3)).cast(pl.Categorical),
                "flag": ["True", "False", "true"] * (n // 3),
                "y": [None if i % 10 == 0 else float(i % 2) for i in range(n)],  # pandas-style 0.0/1.0 with gaps
            }
        ).write_parquet(folder / f"part-{part}.parquet")
    code, _, err = init_from(tmp_path / "home", capsys, folder, "--target", "y", "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "exports.toml")
    assert spec.data.source == "exports" and spec.features.event_time == "when"
    assert drafted_features(spec) == "kind category, flag boolean"
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
    code, _, err = init_from(tmp_path / "home", capsys, data, "--target", "refunded", "--out", str(tmp_path / "specs"))
    assert_refused(tmp_path, code, err, "no column 'refunded'", "--target", "returned")
    assert not (tmp_path / "specs").exists()


def test_task_binary_on_three_values(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = readings_csv(tmp_path / "readings.csv", days=3)
    code, _, err = init_from(
        tmp_path / "home", capsys, data, "--target", "status", "--task", "binary", "--out", str(tmp_path)
    )
    assert_refused(
        tmp_path,
        code,
        err,
        "--task binary",
        "3 distinct value(s) ['fault', 'ok', 'warn']",
        "coded 0/1 or true/false",
        "pass --task multiclass",
    )
    assert not (tmp_path / "readings.toml").exists()


def test_existing_files_are_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = readings_csv(tmp_path / "readings.csv", days=3)
    (tmp_path / "readings.toml").write_text("# mine\n")
    code, _, err = init_from(tmp_path / "home", capsys, data, "--target", "failed", "--out", str(tmp_path))
    assert_refused(tmp_path, code, err, "readings.toml already exists", "--out")
    assert (tmp_path / "readings.toml").read_text() == "# mine\n"
    assert not (tmp_path / "readings.contract.toml").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["readings.csv", "readings.toml"]


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "export.parquet"
    data.write_bytes(b"not a parquet file at all")
    code, _, err = init_from(tmp_path / "home", capsys, data, "--target", "y", "--out", str(tmp_path))
    assert_refused(tmp_path, code, err, "export.parquet could not be read")
    assert not (tmp_path / "export.toml").exists()


def test_no_time_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "flat.csv"
    data.write_text("a,b,y\n1,x,0\n2,y,1\n3,x,0\n")
    code, _, err = init_from(tmp_path / "home", capsys, data, "--target", "y", "--out", str(tmp_path))
    assert_refused(tmp_path, code, err, "time column is required", "--time")


def test_flags_that_need_from(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(tmp_path / "home", capsys, "init", "--target", "y")
    assert code == 1 and "--target goes with --from" in err
    with pytest.raises(SystemExit):
        main(["--home", str(tmp_path / "home"), "init", "--spec", "x.toml", "--from", "y.csv"])


def test_a_registered_name_is_not_drafted_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = readings_csv(tmp_path / "readings.csv", days=3)
    home = tmp_path / "home"
    assert init_from(home, capsys, data, "--target", "failed", "--out", str(tmp_path / "a"))[0] == 0
    code, _, err = init_from(home, capsys, data, "--target", "failed", "--out", str(tmp_path / "b"))
    assert code == 1 and "model 'readings' is already registered" in err and "--name" in err
    assert not (tmp_path / "b").exists()


# -- every task: multiclass and regression targets, guessed or named with --task ---------------------


def test_text_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tiers_csv(tmp_path / "tiers.csv")
    home = tmp_path / "home"
    code, out, err = init_from(home, capsys, data, "--target", "tier", "--entity", "customer", "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "tiers.toml")
    assert spec.target.task == "multiclass" and spec.target.classes == ["bronze", "gold", "silver"]
    assert model_task(spec) == Task("multiclass", ("bronze", "gold", "silver"))
    assert spec.model.description.startswith("Which of its 3 classes tier is")
    assert drafted_features(spec) == "spend_90d float, visits integer, region category"
    # macro F1 of guessing each row's class in the classes' shares is 1/3; the gate asks 0.1 more
    assert spec.validation.metric == "macro_f1" and spec.validation.min_metric == 0.44
    text = (tmp_path / "tiers.toml").read_text()
    assert "threshold" not in text and "min_auc" not in text and "min_recall" not in text
    rule = fields(tmp_path / "tiers.contract.toml")["tier"]
    assert rule.type == "string" and not rule.nullable and rule.allowed_values == ["bronze", "gold", "silver"]
    assert (
        "assumed column 'tier': the target, 3 classes (string, allowed_values ['bronze', 'gold', 'silver'], "
        "sorted: the order of [target] classes"
    ) in out
    assert "most common 'bronze' in 50.0% and least common 'gold' in 15.0% of 900 labelled rows" in out
    assert "assumed validation: metric macro_f1, min_metric 0.44 — guessing" in out
    frame = pl.read_csv(data).with_columns(pl.col("visited").str.to_datetime(time_zone="UTC"))
    for part in held_out_days(tmp_path / "tiers.toml", frame):  # each class on both sides of the split
        assert sorted(part["tier"].unique()) == ["bronze", "gold", "silver"]
    ingest_accepts_all(home, capsys, "tiers", data, 900)


def test_integer_codes_and_the_same_codes_as_a_number(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = faults_parquet(tmp_path / "faults.parquet")
    home = tmp_path / "home"
    code, out, err = init_from(home, capsys, data, "--target", "fault", "--entity", "pump", "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "faults.toml")
    assert spec.target.task == "multiclass" and spec.target.classes == [0, 1, 2, 3]
    assert model_task(spec) == Task("multiclass", (0, 1, 2, 3))
    assert spec.validation.min_metric == 0.35
    rule = fields(tmp_path / "faults.contract.toml")["fault"]
    assert rule.type == "integer" and rule.nullable and rule.allowed_values == [0, 1, 2, 3]
    assert "whole numbers with 4 values, taken for class codes — pass --task regression to treat them" in out
    assert "rows without a label are kept as unlabelled" in out
    for part in held_out_days(tmp_path / "faults.toml", pl.read_parquet(data)):
        assert sorted(part["fault"].unique()) == [0, 1, 2, 3]
    ingest_accepts_all(home, capsys, "faults", data, 840)

    options = "--target fault --entity pump --task regression --name fault_level".split()
    code, out, err = init_from(home, capsys, data, *options, "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "fault_level.toml")
    assert spec.target.task == "regression" and spec.target.classes is None
    assert model_task(spec) == Task("regression", ())
    rule = fields(tmp_path / "fault_level.contract.toml")["fault"]
    assert rule.type == "integer" and rule.allowed_values is None and (rule.min, rule.max) == (0, 5)
    assert "class codes" not in out and "assumed column 'fault': the target, a number to predict (integer" in out
    ingest_accepts_all(home, capsys, "fault_level", data, 840)


def test_skewed_price(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = listings_parquet(tmp_path / "listings.parquet")
    home = tmp_path / "home"
    code, out, err = init_from(home, capsys, data, "--target", "price", "--out", str(tmp_path))
    assert code == 0, err
    spec_path = tmp_path / "listings.toml"
    spec = load_spec(spec_path)
    assert spec.target.task == "regression" and model_task(spec) == Task("regression", ())
    assert spec.model.description.startswith("The value of price")
    text = spec_path.read_text()
    assert "threshold" not in text and "classes" not in text and "min_auc" not in text
    assert drafted_features(spec) == "make category, age_years integer, mileage_km float, days_listed integer"
    frame = pl.read_parquet(data)
    low, high = frame["price"].min(), frame["price"].max()
    rule = fields(tmp_path / "listings.contract.toml")["price"]
    assert rule.type == "float" and not rule.nullable
    assert rule.min == 0 and rule.max >= high + (high - low) / 2  # widened like the numeric features, not below 0
    # the starting gate: a version must beat predicting the training days' mean on the held-out days
    training, held_out = held_out_days(spec_path, frame)
    assert held_out.height >= 100 and training.height >= 100
    mean_rmse = float(np.sqrt(np.mean((held_out["price"].to_numpy() - training["price"].mean()) ** 2)))
    assert spec.validation.metric == "rmse" and 0.99 * mean_rmse <= spec.validation.max_metric < mean_rmse
    assert "assumed column 'price': the target, a number to predict (float, seen" in out
    assert "assumed validation: metric rmse, max_metric" in out
    ingest_accepts_all(home, capsys, "listings", data, 1400)


def test_many_whole_numbers_are_a_quantity(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = listings_parquet(tmp_path / "listings.parquet", days=6)
    code, out, err = init_from(tmp_path / "home", capsys, data, "--target", "days_listed", "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "listings.toml")
    assert model_task(spec) == Task("regression", ())
    assert fields(tmp_path / "listings.contract.toml")["days_listed"].type == "integer"
    assert "more than 20: read as a quantity — pass --task multiclass if they are class codes" in out


def test_regression_split_moves_for_enough_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = listings_parquet(tmp_path / "listings.parquet", days=20, per_day=20)  # 4 held-out days: ~80 rows
    code, out, err = init_from(tmp_path / "home", capsys, data, "--target", "price", "--out", str(tmp_path))
    assert code == 0, err
    assert "(moved from 4 so both parts hold at least 100 labelled rows)" in out
    spec = load_spec(tmp_path / "listings.toml")
    frame = pl.read_parquet(data)
    assert held_out_days(tmp_path / "listings.toml", frame)[1].height >= 100
    one_day_less = frame.filter(
        pl.col("listed_at").dt.truncate("1d")
        > frame["listed_at"].max().replace(hour=0, minute=0, second=0, microsecond=0)
        - timedelta(days=spec.training.eval_days - 1)
    )
    assert one_day_less.height < 100  # the nearest split with enough rows


def test_regression_with_few_rows_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = listings_parquet(tmp_path / "listings.parquet", days=10, per_day=12)
    code, out, err = init_from(tmp_path / "home", capsys, data, "--target", "price", "--out", str(tmp_path))
    assert code == 0, err
    assert "under 100): its metrics rest on few rows — ingest more labelled days" in out
    training, held_out = held_out_days(tmp_path / "listings.toml", pl.read_parquet(data))
    assert abs(training.height - held_out.height) < 40  # the split with the most rows in its smaller part


def _classes_by_day(path: Path, where: dict[str, range]) -> Path:
    """Ten days of 'a'/'b' rows, and class 'c' only on the days given."""
    rows = []
    for day in range(10):
        for i in range(30):
            label = "c" if day in where["c"] and i % 3 == 0 else "ab"[i % 2]
            rows.append((datetime(2026, 9, 1) + timedelta(days=day, minutes=40 * i), float(i), label))
    pl.DataFrame(rows, schema=["at", "x", "grade"], orient="row").write_parquet(path)
    return path


def test_multiclass_split_moves_so_each_class_is_held_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _classes_by_day(tmp_path / "grades.parquet", {"c": range(5, 7)})
    code, out, err = init_from(tmp_path / "home", capsys, data, "--target", "grade", "--out", str(tmp_path))
    assert code == 0, err
    assert (
        "eval_days 4 — the last 4 of the data's 10 days are held out for evaluation (moved from 2 so both "
        "parts hold every class)" in out
    )
    assert load_spec(tmp_path / "grades.toml").training.eval_days == 4


def test_multiclass_split_where_no_split_holds_every_class(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _classes_by_day(tmp_path / "grades.parquet", {"c": range(1)})  # one day: one side only
    code, out, err = init_from(tmp_path / "home", capsys, data, "--target", "grade", "--out", str(tmp_path))
    assert code == 0, err
    assert (
        "eval_days 2 — the last 2 of the data's 10 days are held out for evaluation, the split nearest 2 that "
        "holds the most classes on both sides: the held-out days lack ['c']" in out
    )


def test_float_codes_with_gaps_are_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "shifts.csv"  # pandas writes integer codes with missing values as 1.0, 2.0, …
    n = 240
    pl.DataFrame(
        {
            "at": [(datetime(2026, 8, 1) + timedelta(hours=2 * i)).isoformat() for i in range(n)],
            "load": [float(i % 17) for i in range(n)],
            "crew": [None if i % 11 == 0 else float(1 + i % 3) for i in range(n)],
        }
    ).write_csv(data)
    code, _, err = init_from(tmp_path / "home", capsys, data, "--target", "crew", "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "shifts.toml")
    assert model_task(spec) == Task("multiclass", (1, 2, 3))
    rule = fields(tmp_path / "shifts.contract.toml")["crew"]
    assert rule.type == "integer" and rule.nullable and rule.allowed_values == [1, 2, 3]
    ingest_accepts_all(tmp_path / "home", capsys, "shifts", data, n)


def test_task_binary_drafts_what_the_guess_drafts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = readings_csv(tmp_path / "readings.csv", days=4)
    for folder, task in (("guessed", ()), ("named", ("--task", "binary"))):
        code, _, err = init_from(
            tmp_path / folder / "home", capsys, data, "--target", "failed", *task, "--out", str(tmp_path / folder)
        )
        assert code == 0, err
    for name in ("readings.toml", "readings.contract.toml"):
        assert (tmp_path / "guessed" / name).read_text() == (tmp_path / "named" / name).read_text()


def test_many_text_classes_when_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = refusals_csv(tmp_path / "mixed.csv")
    code, out, err = init_from(
        tmp_path / "home", capsys, data, "--target", "topic", "--task", "multiclass", "--out", str(tmp_path)
    )
    assert code == 0, err
    spec = load_spec(tmp_path / "mixed.toml")
    assert len(model_task(spec).classes) == 60 and spec.target.classes == sorted(spec.target.classes)
    assert "more classes than the 50 a text target is guessed to have: check they are classes" in out
    assert fields(tmp_path / "mixed.contract.toml")["topic"].allowed_values == spec.target.classes


def refusals_csv(path: Path, n: int = 600) -> Path:
    """One column per kind of target a task may refuse."""
    pl.DataFrame(
        {
            "at": [(datetime(2026, 11, 1) + timedelta(hours=i)).isoformat() for i in range(n)],
            "x": [float(i % 13) for i in range(n)],
            "topic": [f"topic {i % 60:02d}" for i in range(n)],  # 60 distinct texts, each 10 times
            "comment": [f"comment number {i}" for i in range(n)],  # every one different
            "tier": ["bronze", "silver", "gold"] * (n // 3),
            "answer": ["yes", "no"] * (n // 2),
            "price": [10.5 + (i * 7919) % 1000 / 4 for i in range(n)],
            "flag": [i % 2 for i in range(n)],
            "constant": [7] * n,
        }
    ).write_csv(path)
    return path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--target", "topic"), ("60 distinct texts", "looks like free text", "--task multiclass if these really are")),
        (
            ("--target", "comment", "--task", "multiclass"),
            ("600 distinct values in 600 labelled rows", "an identifier or free text, not classes"),
        ),
        (
            ("--target", "tier", "--task", "regression"),
            ("--task regression", "holds text", "a regression target is a number", "--task multiclass for classes"),
        ),
        (
            ("--target", "price", "--task", "multiclass"),
            ("--task multiclass", "fractional numbers", "pass --task regression"),
        ),
        (("--target", "price", "--task", "binary"), ("--task binary", "pass --task regression for a number")),
        (("--target", "flag", "--task", "multiclass"), ("three or more classes", "pass --task binary")),
        (("--target", "answer", "--positive", "maybe"), ("--positive 'maybe' is not a value", "--positive yes")),
        (("--target", "answer", "--task", "regression"), ("--task regression", "holds text")),
        (("--target", "constant"), ("a single value [7]", "nothing to learn")),
        (("--target", "constant", "--task", "regression"), ("a single value [7]",)),
    ],
)
def test_targets_a_task_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    data = refusals_csv(tmp_path / "mixed.csv")
    code, _, err = init_from(tmp_path / "home", capsys, data, *args, "--out", str(tmp_path / "out"))
    assert_refused(tmp_path, code, err, *words)
    assert not (tmp_path / "out").exists()


def test_task_needs_from(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(tmp_path / "home", capsys, "init", "--task", "regression")
    assert code == 1 and "--task goes with --from" in err
    with pytest.raises(SystemExit):
        main(["--home", str(tmp_path / "home"), "init", "--from", "y.csv", "--target", "y", "--task", "ordinal"])


def test_drafted_multiclass_and_regression_specs_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    home = tmp_path / "home"
    for data, target in (
        (tiers_csv(tmp_path / "tiers.csv"), "tier"),
        (listings_parquet(tmp_path / "listings.parquet"), "price"),
    ):
        assert init_from(home, capsys, data, "--target", target, "--out", str(tmp_path))[0] == 0
    with Home(home) as opened:
        for name, metric in (("tiers", "macro_f1"), ("listings", "rmse")):
            outcome = train(opened, load_spec(tmp_path / f"{name}.toml"))
            assert outcome.gates.passed, [c.detail for c in outcome.gates.checks if not c.passed]
            assert metric in outcome.version.metrics


def test_zero_padded_ids_in_a_csv_stay_text(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Depot ids and postcodes written with leading zeros: as integers "0042" and "42" would be one depot and the
    # stored keys would lose their zeros. A count that holds 0 stays a whole number.
    rng = np.random.default_rng(8)
    n = 10 * 60
    depot = [f"{k:04d}" for k in rng.integers(1, 120, n)]
    postcodes = ["01067", "01099", "08001", "20095"]
    postcode = rng.choice(postcodes, n)
    parcels = rng.integers(0, 9, n)
    late = (rng.uniform(size=n) < np.where(postcode == "01067", 0.6, 0.2) + parcels * 0.03).astype(int)
    lines = ["depot;postcode;sent_at;parcels;late"]
    for i, at in enumerate(_times(rng, datetime(2026, 8, 1, tzinfo=UTC), 10, n)):
        lines.append(f"{depot[i]};{postcode[i]};{at:%Y-%m-%dT%H:%M:%SZ};{parcels[i]};{late[i]}")
    data = tmp_path / "parcels.csv"
    data.write_text("\n".join(lines) + "\n")
    home = tmp_path / "home"

    code, out, err = init_from(home, capsys, data, "--target", "late", "--entity", "depot", "--out", str(tmp_path))
    assert code == 0, err
    zeros = "keep their leading zeros"
    assert f"assumed column 'depot': string (values like '{depot[0]}' {zeros}), the entity key (--entity;" in out
    first_padded = next(p for p in postcode if p.startswith("0"))
    assert f"assumed column 'postcode': string (values like '{first_padded}' {zeros}), 4 distinct values" in out
    rules = fields(tmp_path / "parcels.contract.toml")
    assert rules["depot"].type == "string" and rules["parcels"].type == "integer"
    assert rules["postcode"].allowed_values == postcodes
    assert drafted_features(load_spec(tmp_path / "parcels.toml")) == "postcode category, parcels integer"

    ingest_accepts_all(home, capsys, "parcels", data, n)
    code, out, err = run(home, capsys, "data", "list", "parcels")
    snapshot = out.splitlines()[1].split()[0]
    code, out, err = run(home, capsys, "data", "show", snapshot)
    assert code == 0, err
    stored = pl.read_parquet(next(line.split()[1] for line in out.splitlines() if line.startswith("file ")))
    assert sorted(set(stored["depot"])) == sorted(set(depot)) and sorted(set(stored["postcode"])) == postcodes

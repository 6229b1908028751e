"""Event times as Unix seconds: a contract timestamp declares format = "%s" and files' numbers (or text of
digits) read as seconds at ingest, drafted by `init --from`, and sent as text to the API; numbers without
that format, or past 2200 (milliseconds), are never read as times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from appliance.home import Home
from appliance.spec import load_spec
from appliance.training.pipeline import train
from tests.conftest import running_server
from tests.test_init_from import drafted_features, fields, ingest_accepts_all, init_from, run

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=13)


def kilns_csv(path: Path, days: int = 12, per_day: int = 60, clock: str = "ts", scale: int = 1) -> Path:
    """Kiln readings: a date-only 'serviced' column first, the reading's time as Unix seconds (times ``scale``)
    in column ``clock``, a float load, a text zone and a 0/1 target that follows the load."""
    rng = np.random.default_rng(11)
    n = days * per_day
    seconds = np.sort(rng.integers(0, days * 86_400, n)) + int(START.timestamp())
    load = rng.normal(50, 15, n)
    serviced = [(START.date() - timedelta(days=int(d))).isoformat() for d in rng.integers(30, 400, n)]
    pl.DataFrame(
        {
            "serviced": serviced,
            clock: seconds * scale,
            "load": load.round(2),
            "zone": rng.choice(["east", "north", "west"], n),
            "cracked": (load + rng.normal(0, 10, n) > 60).astype(int),
        }
    ).write_csv(path)
    return path


def test_unix_seconds_named_as_a_time_are_the_event_time_and_read_as_text_by_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = kilns_csv(tmp_path / "kilns.csv")
    home = tmp_path / "home"
    code, out, err = init_from(home, capsys, data, "--target", "cracked", "--out", str(tmp_path))
    assert code == 0, err
    spec = load_spec(tmp_path / "kilns.toml")
    # the clock is the event time, ahead of the date-only column before it, and never a request feature
    assert spec.features.event_time == "ts" and drafted_features(spec) == "load float, zone category"
    rule = fields(tmp_path / "kilns.contract.toml")["ts"]
    assert rule.type == "timestamp" and rule.format == "%s"
    first = pl.read_csv(data)["ts"][0]
    line = f"Unix seconds (values like {first} = {datetime.fromtimestamp(first, UTC):%Y-%m-%dT%H:%M:%S}Z)"
    assert line in next(line for line in out.splitlines() if "column 'ts'" in line)
    assert "time column: 'ts', the first of the time columns ['serviced', 'ts'] with a time of day" in out
    ingest_accepts_all(home, capsys, "kilns", data, 720)

    with Home(home) as opened:
        assert train(opened, spec).version.version == 1
    assert run(home, capsys, "promote", "kilns", "1")[0] == 0
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    with running_server(home) as server:
        reading = {"load": 71.5, "zone": "east"}
        answer = server.client.post("/v1/models/kilns/predict", json={**reading, "ts": str(int(at.timestamp()))})
        assert answer.status_code == 200, answer.text
        millis = server.client.post("/v1/models/kilns/predict", json={**reading, "ts": str(int(at.timestamp()) * 1000)})
        assert millis.status_code == 422 and "'%s'" in millis.text


def test_a_clock_not_named_as_one_is_a_feature_only_with_a_warning_and_reads_with_time(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = kilns_csv(tmp_path / "kilns.csv", clock="reading")
    code, out, err = init_from(tmp_path / "home", capsys, data, "--target", "cracked", "--out", str(tmp_path / "a"))
    assert code == 0, err
    line = next(line for line in out.splitlines() if "column 'reading'" in line)
    assert "Unix seconds (values like" in line and "pass --time reading" in line
    assert load_spec(tmp_path / "a" / "kilns.toml").features.event_time == "serviced"

    flags = ("--time", "reading", "--time-format", "%s", "--name", "kilns2", "--out", str(tmp_path / "b"))
    code, out, err = init_from(tmp_path / "home", capsys, data, "--target", "cracked", *flags)
    assert code == 0, err
    assert fields(tmp_path / "b" / "kilns2.contract.toml")["reading"].format == "%s"
    assert "column 'reading': timestamp (Unix seconds (values like" in out

    code, _, err = init_from(tmp_path / "home", capsys, data, "--target", "cracked", "--time-format", "%s %H")
    assert code != 0 and err.count("\n") == 1 and 'format = "%s" alone' in err
    millis = kilns_csv(tmp_path / "millis.csv", clock="reading", scale=1000)
    code, _, err = init_from(tmp_path / "home", capsys, millis, "--target", "cracked", "--time", "reading")
    assert code != 0 and err.count("\n") == 1 and "milliseconds?" in err


def test_ingest_reads_declared_seconds_and_quarantines_milliseconds(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = kilns_csv(tmp_path / "kilns.csv")
    home = tmp_path / "home"
    assert init_from(home, capsys, data, "--target", "cracked", "--out", str(tmp_path))[0] == 0
    frame = pl.read_csv(data)
    # float seconds and text of digits read too; a millisecond value is no far-future time but a bad row
    mixed = frame.with_columns(pl.col("ts").cast(pl.Float64) + 0.5)
    mixed = mixed.with_columns(ts=pl.when(pl.int_range(pl.len()) == 5).then(pl.col("ts") * 1000).otherwise("ts"))
    mixed.write_csv(tmp_path / "mixed.csv")
    code, out, err = run(home, capsys, "ingest", "kilns", str(tmp_path / "mixed.csv"))
    assert code == 0 and "719 accepted, 1 quarantined" in out, err + out
    code, out, err = run(home, capsys, "data", "quarantine", "kilns")
    assert "ts: not a timestamp in Unix seconds from 1970 to 2200" in out, err + out
    frame.with_columns(pl.col("ts").cast(pl.String)).write_parquet(tmp_path / "text.parquet")
    ingest_accepts_all(home, capsys, "kilns", tmp_path / "text.parquet", 720)

    frame.with_columns(pl.col("ts") * 1000).write_csv(tmp_path / "millis.csv")
    code, _, err = run(home, capsys, "ingest", "kilns", str(tmp_path / "millis.csv"))
    assert code == 1 and err.count("\n") == 1 and "likely milliseconds" in err

    contract = tmp_path / "kilns.contract.toml"
    contract.write_text(contract.read_text().replace('format = "%s"\n', ""))
    code, _, err = run(home, capsys, "ingest", "kilns", str(data))
    assert code == 1 and err.count("\n") == 1 and "declare format = \"%s\" for 'ts'" in err

"""Text times other than ISO 8601: never guessed; read in the format the contract declares, alike at ingest,
in the drafted contract and in API requests."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from appliance.data.contract import TIMESTAMP_FORMATS, load_contract
from appliance.home import Home
from appliance.layout import Layout
from appliance.spec import load_spec
from tests.conftest import SAMPLE_RECORD, cli, running_server, small_spec


def _events(path: Path, spelling: str, start: datetime, days: int, separator: str = ",") -> Path:
    """Integer device ids, a float reading, a 0/1 target; times in ``spelling``, every 20 minutes."""
    rng = np.random.default_rng(3)
    n = days * 72
    lines = [separator.join(["device", "seen", "level", "alarm"])]
    for i in range(n):
        at = (start + timedelta(minutes=20 * i)).strftime(spelling)
        lines.append(separator.join([str(i % 17), at, f"{rng.normal(5, 2):.3f}", str(int(rng.uniform() < 0.3))]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _draft(tmp_path: Path, source: Path, *flags: str) -> tuple[int, str, str]:
    return cli(tmp_path / "home", "init", "--from", str(source), "--target", "alarm", "--out", str(tmp_path), *flags)


def test_no_format_is_inferred():
    assert None not in TIMESTAMP_FORMATS


def test_month_first_dates_that_could_be_day_first_are_refused_with_the_flag_to_pass(tmp_path):
    # 12 days of November, month first: every number is at most 12, so the order is the writer's to say
    source = _events(tmp_path / "mdy.csv", "%m/%d/%Y %H:%M", datetime(2026, 11, 1), 12)
    code, out, err = _draft(tmp_path, source)
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert "'seen'" in err and "--time-format" in err and '"%m/%d/%Y %H:%M"' in err
    assert not list(tmp_path.glob("*.toml"))

    code, out, err = _draft(tmp_path, source, "--time-format", "%m/%d/%Y %H:%M")
    assert code == 0, err
    rule = next(f for f in load_contract(tmp_path / "mdy.contract.toml").fields if f.name == "seen")
    assert rule.format == "%m/%d/%Y %H:%M"
    assert "ISO 8601" not in next(line for line in out.splitlines() if "column 'seen'" in line)
    assert "the last 2 of the data's 12 days" in out  # November's 12 days, not January to November
    code, out, err = cli(tmp_path / "home", "ingest", "mdy", str(source))
    assert code == 0 and "864 accepted, 0 quarantined" in out and "2026-11-12T23:40" in out, err + out


@pytest.mark.parametrize(
    ("spelling", "separator", "evidence"),
    [("%d/%m/%Y %H:%M", ",", "first number"), ("%m-%d-%Y %H:%M:%S", ";", "second number")],
)
def test_a_day_above_12_settles_the_order_and_the_draft_says_so(tmp_path, spelling, separator, evidence):
    source = _events(tmp_path / "events.csv", spelling, datetime(2026, 10, 3), 20, separator)
    code, out, err = _draft(tmp_path, source)
    assert code == 0, err
    line = next(line for line in out.splitlines() if "column 'seen'" in line)
    assert f'"{spelling}"' in line and evidence in line and "ISO 8601" not in line
    assert (
        next(f for f in load_contract(tmp_path / "events.contract.toml").fields if f.name == "seen").format == spelling
    )


def test_a_bad_format_is_one_error_line(tmp_path):
    source = _events(tmp_path / "events.csv", "%d/%m/%Y %H:%M", datetime(2026, 10, 3), 3)
    code, _, err = _draft(tmp_path, source, "--time-format", "%d/%m %H:%M")
    assert code != 0 and err.count("\n") == 1 and "a year" in err
    contract = tmp_path / "bad.contract.toml"
    contract.write_text(
        '[contract]\nname = "x"\nversion = "1"\nevent_time = "t"\n\n'
        '[[fields]]\nname = "t"\ntype = "float"\nformat = "%d/%m/%Y"\n'
    )
    with pytest.raises(Exception, match="only a timestamp has a format"):
        load_contract(contract)


def test_the_api_reads_the_contracts_format_and_logs_iso_text(home_dir, tmp_path):
    spec_path = small_spec(tmp_path)
    contract = spec_path.parent / "contract.toml"
    text = contract.read_text()
    contract.unlink()
    contract.write_text(
        text.replace(
            'name = "event_time"\ntype = "timestamp"\n',
            'name = "event_time"\ntype = "timestamp"\nformat = "%d/%m/%Y %H:%M"\n',
        )
    )
    with Home(home_dir) as home:
        home.add_model(load_spec(spec_path))
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    with running_server(home_dir) as server:
        answer = server.client.post(
            "/v1/models/fraud/predict", json={**SAMPLE_RECORD, "event_time": at.strftime("%d/%m/%Y %H:%M")}
        )
        assert answer.status_code == 200, answer.text
        refused = server.client.post(
            "/v1/models/fraud/predict", json={**SAMPLE_RECORD, "event_time": "13/13/2026 10:00"}
        )
        assert refused.status_code == 422 and "'%d/%m/%Y %H:%M'" in refused.text
        request_id = answer.json()["request_id"]
    # the server has stopped, its log written: the time as ISO 8601 text, as every later reader reads times
    with sqlite3.connect(Layout(home_dir).predictions_db) as db:
        row = db.execute("SELECT event_time FROM predictions WHERE request_id = ?", (request_id,)).fetchone()
    assert row is not None and datetime.fromisoformat(row[0]) == at


def test_staleness_and_drafted_ranges_read_as_a_person_writes_them(tmp_path):
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=16)
    source = _events(tmp_path / "late.csv", "%Y-%m-%dT%H:%M:%S", start, 6)  # newest event about 10 days old
    code, out, err = _draft(tmp_path, source)
    assert code == 0, err
    level = next(line for line in out.splitlines() if "column 'level'" in line)
    seen = re.search(r"seen (\S+)\.\.(\S+) →", level)
    assert seen and all(len(re.sub(r"[^0-9]", "", v).lstrip("0")) <= 6 for v in seen.groups()), level
    code, out, err = cli(tmp_path / "home", "ingest", "late", str(source))
    assert code == 0 and re.search(r"newest event is 10\.\d days old", err + out), err + out

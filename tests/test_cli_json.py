"""`--json` on every command that reads: one JSON document on stdout, parsed with json.loads, its fields real."""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import polars as pl
import pytest

from appliance.alerts.records import record_firing
from appliance.alerts.rules import Firing
from appliance.cli import build_parser
from appliance.cli.output import plain
from appliance.home import Home
from appliance.monitoring.store import RESULT_SCHEMA, open_monitoring, write_results
from appliance.spec.alerts import AlertRule
from tests.conftest import cli, command_paths, ok

DAY0 = datetime(2026, 10, 20, tzinfo=UTC)
CHECKS = ("quality", "drift", "performance", "estimated", "serving", "machine", "pipeline")


def document(home: Path, *args: str):
    """``appliance ARGS --json``, which must succeed: its whole stdout parsed as one JSON document."""
    return json.loads(ok(home, *args, "--json"))


def moment(text: str) -> datetime:
    """An ISO 8601 UTC time of a document."""
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timedelta(0), text
    return parsed


@pytest.fixture(scope="module")
def home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained data directory with something in every read: a key, a canary, monitoring results of
    every check (one of them not a number), an alert, and a second snapshot with a quarantined row."""
    root = tmp_path_factory.mktemp("json") / "home"
    shutil.copytree(trained_home, root)
    ok(root, "keys", "create", "--scope", "predict", "--name", "nightly export")
    ok(root, "deploy", "fraud", "start", "canary", "--version", "2")
    results = [
        {
            "model": "fraud",
            "version": 1,
            "window_start": DAY0 + timedelta(days=day),
            "window_end": DAY0 + timedelta(days=day + 1),
            "check": check,
            "feature": "amount",
            "method": f"{check}_figure",
            "value": math.nan if check == "estimated" else 0.25 + day,
            "threshold": 0.5,
            "rows": 100 + day,
            "alert": day == 1,
            "computed_at": DAY0.timestamp() + 86400 * (day + 1),
        }
        for check in CHECKS
        for day in (0, 1)
    ]
    conn = open_monitoring(root)
    try:
        write_results(conn, pl.DataFrame(results, schema=RESULT_SCHEMA))
    finally:
        conn.close()
    rule = AlertRule(name="amount drifts", check="drift", method="drift_figure", op=">", threshold=0.5)
    with Home(root) as h:
        firing = Firing(rule, "amount", 1.25, iso_day(1), iso_day(2), threshold=0.5, check="drift", version=1)
        record_firing(h.conn, "fraud", firing)
        source = h.spec("fraud").resolve(h.spec("fraud").data.source)
    history = pl.read_parquet(source)
    last_day = history.filter(pl.col("event_time").dt.date() == pl.col("event_time").max().dt.date())
    rows = last_day.with_columns(pl.col("amount").cast(pl.String))
    rows = rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("lots")).otherwise("amount").alias("amount")
    )
    rows.write_csv(root.parent / "late.csv")
    ok(root, "ingest", "fraud", str(root.parent / "late.csv"))
    return root


def iso_day(day: int) -> str:
    return (DAY0 + timedelta(days=day)).isoformat()


def test_models_list_and_one_model(home):
    [fraud] = document(home, "models")
    assert (fraud["name"], fraud["production"], fraud["candidate"], fraud["versions"]) == ("fraud", 1, 2, 2)
    shown = document(home, "models", "fraud")
    assert [(v["version"], v["status"], v["alias"]) for v in shown["version_list"]] == [
        (1, "registered", "production"),
        (2, "registered", "candidate"),
    ]
    first = shown["version_list"][0]
    assert first["metrics"]["auc"] > 0.5 and first["gate_report"]["checks"] and len(first["data_version"]) == 64
    assert moment(first["created_at"]).year >= 2026
    [compared] = shown["against_production"]
    assert compared["version"] == 2
    assert (compared["comparison"] is None) != (compared["not_compared"] is None)
    if compared["comparison"]:
        assert compared["comparison"]["production"] == 1 and compared["comparison"]["rows"] > 0


def test_runs_list_show_and_compare(home):
    runs = document(home, "runs", "list", "--model", "fraud")
    assert len(runs) == 2 and {r["status"] for r in runs} == {"succeeded"}
    assert moment(runs[0]["started_at"]) >= moment(runs[1]["started_at"])  # newest first
    assert moment(runs[0]["ended_at"]) >= moment(runs[0]["started_at"])
    shown = document(home, "runs", "show", runs[0]["id"][:8])
    assert shown["run"]["id"] == runs[0]["id"] and shown["params"] and shown["metrics"]
    assert [s["stage"] for s in shown["stages"]][:2] == ["ingest", "validate"]
    assert all(s["status"] == "succeeded" for s in shown["stages"])
    assert all(moment(s["started_at"]) for s in shown["stages"])
    compared = document(home, "runs", "compare", runs[0]["id"], runs[1]["id"])
    assert [d["run"]["id"] for d in compared] == [r["id"] for r in runs]


def test_data_list_show_diff_and_quarantine(home):
    snapshots = document(home, "data", "list", "fraud")
    assert len(snapshots) == 2 and snapshots[0]["versions"] == [1, 2] and snapshots[1]["versions"] == []
    assert snapshots[1]["parent"] == snapshots[0]["hash"] and snapshots[1]["quarantined"] == 1
    [shown] = document(home, "data", "show", snapshots[1]["hash"][:10])
    assert shown["hash"] == snapshots[1]["hash"] and Path(shown["file"]).is_file() and shown["trained"] == []
    assert shown["schema"]["amount"] and moment(shown["created_at"])
    diff = document(home, "data", "diff", snapshots[0]["hash"], snapshots[1]["hash"])
    assert diff["old"]["hash"] == snapshots[0]["hash"] and diff["new"]["rows"] == snapshots[1]["rows"]
    assert diff["added_columns"] == {} and isinstance(diff["only_in_new"], int)
    quarantined = document(home, "data", "quarantine", "fraud")
    assert quarantined["rows"] == 1 and quarantined["by_reason"][0]["rows"] == 1
    assert "amount" in quarantined["by_reason"][0]["reason"]
    assert [row["amount"] for row in quarantined["sample"]] == ["lots"]


def test_features_skew_and_show(home):
    skew = document(home, "features", "skew", "fraud", "--sample", "20")
    assert skew["entities"] > 0 and skew["mismatches"] == [] and "amount_max_7d" in skew["features"]
    datetime.fromisoformat(skew["as_of"])
    record = document(home, "features", "show", "fraud", "u00042", "--at", "2026-10-16T09:30:00Z")
    assert record["user_id"] == "u00042" and "account_age_days" in record


def test_monitor_for_every_check(home):
    every = document(home, "monitor", "fraud")
    assert {r["check"] for r in every} == set(CHECKS) and len(every) == 2 * len(CHECKS)
    for check in CHECKS:
        rows = document(home, "monitor", "fraud", "--check", check)
        assert [r["check"] for r in rows] == [check, check], check
        assert [moment(r["window_start"]).date() for r in rows] == [date(2026, 10, 20), date(2026, 10, 21)]
        assert [r["alert"] for r in rows] == [False, True] and [r["rows"] for r in rows] == [100, 101]
        assert moment(rows[0]["computed_at"]) == DAY0 + timedelta(days=1)
        assert [r["value"] for r in rows] == ([None, None] if check == "estimated" else [0.25, 1.25])
    since = document(home, "monitor", "fraud", "--check", "drift", "--since", "2026-10-21")
    assert [r["rows"] for r in since] == [101]


def test_alerts_list_and_show(home):
    for words in (("alerts",), ("alerts", "list")):
        [listed] = document(home, *words, "--model", "fraud")
        assert (listed["rule"], listed["target"], listed["status"], listed["value"]) == (
            "amount drifts",
            "amount",
            "open",
            1.25,
        )
    shown = document(home, "alerts", "show", str(listed["id"]))
    assert shown["id"] == listed["id"] and shown["window_start"] == iso_day(1) and shown["actions"] == []
    assert moment(shown["first_seen"]) <= moment(shown["last_seen"]) and shown["resolved_at"] is None


def test_jobs_keys_and_the_deployment(home):
    jobs = {(j["job"], j["model"]): j for j in document(home, "jobs", "list")}
    assert jobs[("monitor", "fraud")]["schedule"] and moment(jobs[("monitor", "fraud")]["next_run"])
    assert jobs[("train", "fraud")]["schedule"] is None and jobs[("train", "fraud")]["next_run"] is None
    [key] = document(home, "keys", "list")
    assert (key["name"], key["scopes"], key["revoked_at"]) == ("nightly export", ["predict"], None)
    assert set(key) == {
        "id",
        "name",
        "scopes",
        "rate_per_second",
        "created_at",
        "revoked_at",
    }  # never a token, nor its hash
    status = document(home, "deploy", "fraud", "status")
    deployment = status["deployment"]
    assert (deployment["strategy"], deployment["candidate_version"], deployment["baseline_version"]) == (
        "canary",
        2,
        1,
    )
    assert moment(deployment["started_at"]) and deployment["ended_at"] is None
    assert status["step"]["traffic_percent"] == deployment["traffic_percent"] > 0


def test_machine(home):
    body = document(home, "machine")
    assert moment(body["snapshot"]["taken_at"]) and body["cost_per_hour"]["total_per_hour"] >= 0
    assert {p["name"] for p in body["snapshot"]["disk"]["parts"]} >= {"metadata.db", "artifacts/"}


# The commands this file reads with --json (`deploy MODEL status` as its parser nests it); `predict`'s --json is
# its input, and its answer is JSON already.
TESTED = {
    ("models",),
    ("runs", "list"),
    ("runs", "show"),
    ("runs", "compare"),
    ("data", "list"),
    ("data", "show"),
    ("data", "diff"),
    ("data", "quarantine"),
    ("features", "skew"),
    ("features", "show"),
    ("monitor",),
    ("alerts",),
    ("alerts", "list"),
    ("alerts", "show"),
    ("jobs", "list"),
    ("keys", "list"),
    ("deploy", "status"),
    ("machine",),
}


def test_every_command_that_reads_has_json_and_a_test_here():
    with_json = {
        words for words, parser in command_paths(build_parser()) if any(a.dest == "json" for a in parser._actions)
    }
    assert with_json == TESTED


def test_a_documents_values_whatever_the_data():
    """Data unlike the sample: integer keys, naive and zoned times, NaN and infinity, nested records."""

    class Reading(msgspec.Struct):
        sensor: int
        taken_at: float
        values: dict[int, float]
        window: tuple[datetime, datetime]
        where: Path

    naive = datetime(2031, 2, 3, 4, 5, 6)
    zoned = datetime(2031, 2, 3, 6, 5, 6, tzinfo=UTC)
    reading = Reading(7, 1_900_000_000.5, {3: math.inf, 4: -0.0, 5: math.nan}, (naive, zoned), Path("/srv/x"))
    encoded = json.loads(msgspec.json.encode(plain([reading, pl.DataFrame({"k": [1, 2], "v": [0.5, None]})])))
    assert encoded[0] == {
        "sensor": 7,
        "taken_at": "2030-03-17T17:46:40.500000Z",
        "values": {"3": None, "4": -0.0, "5": None},
        "window": ["2031-02-03T04:05:06Z", "2031-02-03T06:05:06Z"],
        "where": "/srv/x",
    }
    assert encoded[1] == [{"k": 1, "v": 0.5}, {"k": 2, "v": None}]
    code, out, err = cli(Path("/nonexistent-appliance-home"), "keys", "list", "--json")
    assert (code, out) == (1, "") and err.startswith("error: no data directory")

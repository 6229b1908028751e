"""Every input that reaches storage or a job is bounded: attacked through the real server, the CLI and the
files, on data unlike the sample (integer keys and codes; a model without an entity, from a CSV).

- event times: a predict record dated outside the model's horizon around the server's clock is refused
  (422, the whole request, nothing logged); an ingested row dated after it is quarantined, not a reason to
  refuse the batch;
- logged fields: only the fields the spec declares are logged, so no extra field (text once, an object the
  next time, or named like monitoring's own ``_score``) can stop the monitor job;
- monitoring: a run builds windows only within the horizon and at most ``[monitoring] max_windows``, whatever
  the log already holds (rows an older server logged, dated year 1 or 9999).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import cli, ok, running_server
from own_data import write_loans, write_subscriptions

from appliance.home import Home
from appliance.layout import Layout
from appliance.monitoring import store as monitoring_store
from appliance.scheduler.jobs import run_job
from storage.prediction_log import PredictionStore

LOAN = {"income": 41000.0, "term": 60, "grade": "C", "cosigned": False}
SESSION_FIELDS = {"subscriber", "logged_at", "minutes", "channel", "on_mobile"}


def _trained(root: Path, spec: Path, model: str, source: str) -> Path:
    home = root / "home"
    ok(home, "init", "--spec", str(spec))
    ok(home, "ingest", model, str(spec.parent / source))
    ok(home, "train", model)
    ok(home, "promote", model, "1")
    if model == "subs":
        ok(home, "features", "materialize", model)
    return home


@pytest.fixture(scope="module")
def trained_loans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loans")
    spec = write_loans(root / "data", days=6, live_days=2)
    # the default horizon is what is tested here: drop the data set's wider one (its days are in 2026)
    text = spec.read_text()
    spec.write_text(re.sub(r"\nevent_time_past = .*\n", "\n", text, count=1))
    return _trained(root, spec, "loans", "applications.csv")


@pytest.fixture(scope="module")
def trained_subs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("subs")
    return _trained(root, write_subscriptions(root / "data", days=10, live_days=4), "subs", "history.parquet")


def _copy(home: Path, tmp_path: Path) -> Path:
    """A private copy of a trained data directory whose spec (registered by absolute path) is private too."""
    data = tmp_path / "data"
    shutil.copytree(home.parent / "data", data)
    target = tmp_path / "home"
    shutil.copytree(home, target)
    with Home(target) as h:
        for model in h.registry.models():
            h.registry.add_model(model.name, str(data / Path(model.spec_path).name))
    return target


def _spec(home: Path, model: str) -> Path:
    with Home(home) as h:
        return Path(h.registry.model(model).spec_path)


def _logged(home: Path, model: str) -> list[dict]:
    store = PredictionStore(Layout(home).predictions_db)
    try:
        return [
            dict(r)
            for r in store.conn.execute(
                "SELECT request_id, event_time, features_json FROM predictions WHERE model = ?", (model,)
            )
        ]
    finally:
        store.close()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_record_dated_outside_the_horizon_is_refused_whole_and_never_logged(trained_loans: Path, tmp_path: Path):
    home = _copy(trained_loans, tmp_path)
    now = datetime.now(UTC)
    with running_server(home) as server:
        post = lambda body: server.client.post("/v1/models/loans/predict", json=body)  # noqa: E731
        assert post({**LOAN, "applied": "2026-05-07 10:00:00"}).status_code == 200  # the live days, as the CSV
        assert post(LOAN).status_code == 200  # undated: now
        for when, setting in [
            ("1971-01-01T00:00:00Z", 'event_time_past = "730d"'),
            (_iso(now - timedelta(days=731)), 'event_time_past = "730d"'),
            (_iso(now + timedelta(days=3)), 'event_time_future = "1d"'),
            (7_000_000_000, 'event_time_future = "1d"'),
        ]:  # Unix seconds: the year 2191
            refused = post({**LOAN, "applied": when})
            detail = refused.json()["detail"]
            assert refused.status_code == 422 and detail.startswith(f"'applied' {when!r}"[:20]), detail
            assert setting in detail and "widen those settings in the model's spec" in detail
            assert f" {_iso(now - timedelta(days=730))[:13]}" in detail  # the range it takes, from the clock
        batch = post([{**LOAN, "applied": "2026-05-07 11:00:00"}, {**LOAN, "applied": "2199-01-01"}])
        assert batch.status_code == 422 and batch.json()["detail"].startswith("record 1: 'applied' '2199-01-01'")
        server.app.predict.state.log.flush()
        assert len(_logged(home, "loans")) == 2  # the refused requests left nothing in the log

        spec = _spec(home, "loans")  # a user replaying older traffic widens the setting the refusal names
        spec.write_text(spec.read_text().replace('live = "live.csv"', 'live = "live.csv"\nevent_time_past = "30000d"'))
        deadline = time.monotonic() + 20
        while post({**LOAN, "applied": "1971-01-01T00:00:00Z"}).status_code != 200:
            assert time.monotonic() < deadline, "the server did not pick up the widened horizon"
            time.sleep(0.05)


def test_fields_the_spec_does_not_declare_are_not_logged_and_cannot_stop_monitoring(trained_subs: Path, tmp_path: Path):
    home = _copy(trained_subs, tmp_path)
    live = pl.read_parquet(tmp_path / "data" / "live.parquet").head(400)
    extras = [
        {"note": "a text"},
        {"note": {"nested": [1, 2]}},
        {"_score": {"x": 1}},
        {"_label": "spam"},
        {"plan": {"not": "a plan"}},
        {"tenure_months": "forever"},
    ]  # the last two: entity attributes
    with running_server(home) as server:
        for i, row in enumerate(live.iter_rows(named=True)):
            record = {
                "subscriber": row["subscriber"],
                "logged_at": row["logged_at"].isoformat(),
                "minutes": row["minutes"],
                "channel": row["channel"],
                "on_mobile": row["on_mobile"],
                **extras[i % len(extras)],
            }
            answer = server.client.post("/v1/models/subs/predict", json=record)
            assert answer.status_code == 200, answer.text
        server.app.predict.state.log.flush()
        metrics = server.client.get("/metrics").text
    assert f"appliance_prediction_log_undeclared_fields_total {live.height}" in metrics  # one extra per request
    logged = _logged(home, "subs")
    assert len(logged) == live.height
    assert all(set(json.loads(r["features_json"])) <= SESSION_FIELDS for r in logged)
    run = run_job(home, "monitor", "subs")
    assert run.status == "succeeded", run.error
    with Home(home) as h:
        results = monitoring_store.results(h, "subs")
    # the entity attributes are the entity file's (joined), not what a request said they were
    plan = results.filter(check="quality", feature="plan", method="missing_rate")
    assert plan.height and (plan["value"] == 0).all()


def test_a_log_holding_far_dates_and_poisoned_fields_is_monitored_in_bounded_windows(
    trained_subs: Path, tmp_path: Path
):
    live = pl.read_parquet(trained_subs.parent / "data" / "live.parquet")
    rows = [
        {
            "subscriber": r["subscriber"],
            "logged_at": r["logged_at"].isoformat(),
            "minutes": r["minutes"],
            "channel": r["channel"],
            "on_mobile": r["on_mobile"],
        }
        for r in live.iter_rows(named=True)
    ]
    first = rows[0]
    rows += [
        {**first, "logged_at": at}
        for at in ("0001-01-01T00:00:00Z", "1970-01-02T00:00:00Z", "2199-12-31T00:00:00Z", "9999-12-31T00:00:00Z")
    ]
    rows += [
        {**first, "note": "text"},
        {**first, "note": {}},
        {**first, "_score": {"x": 1}, "plan": [1]},
        {**first, "channel": {"code": 2}, "minutes": "many"},
    ]
    days = sorted(live["logged_at"].dt.date().unique())

    def monitored_days(home: Path) -> list:
        store = PredictionStore(Layout(home).predictions_db)
        try:  # as a server before these bounds logged them: any event time, any extra field
            store.append(
                [
                    (
                        f"old-{i}",
                        0,
                        "subs",
                        1,
                        "production",
                        None,
                        1.79e9 + i,
                        r["logged_at"],
                        str(r["subscriber"]),
                        json.dumps(r),
                        0.2,
                        0,
                        1.0,
                        200,
                        None,
                        None,
                    )
                    for i, r in enumerate(rows)
                ]
            )
        finally:
            store.close()
        run = run_job(home, "monitor", "subs")
        assert run.status == "succeeded", run.error
        with Home(home) as h:
            drift = monitoring_store.results(h, "subs").filter(check="drift")
        return sorted(drift["window_start"].dt.date().unique())

    assert monitored_days(_copy(trained_subs, tmp_path / "a")) == days  # nothing of year 1, 1970 or 9999
    capped = _copy(trained_subs, tmp_path / "b")
    spec = _spec(capped, "subs")
    spec.write_text(spec.read_text().replace("[training]", "[monitoring]\nmax_windows = 2\n\n[training]", 1))
    assert monitored_days(capped) == days[-2:]  # at most two, the newest


def test_a_row_dated_after_the_horizon_is_quarantined_and_the_batch_ingested(tmp_path: Path):
    spec = write_subscriptions(tmp_path / "data", days=6, live_days=0)
    contract = spec.parent / "contract.toml"
    contract.write_text(contract.read_text() + "\n[volume]\nmin_rows_per_day = 200\n")
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    history = pl.read_parquet(spec.parent / "history.parquet")
    later = datetime.now() + timedelta(days=40)  # naive, as the file's times: UTC
    schema = history.schema
    batch = pl.concat(
        [
            history.head(900),
            history.tail(1).with_columns(
                session_id=pl.lit(10**6).cast(schema["session_id"]), logged_at=pl.lit(later).cast(schema["logged_at"])
            ),
        ]
    )
    batch.write_parquet(tmp_path / "batch.parquet")
    out = ok(home, "ingest", "subs", str(tmp_path / "batch.parquet"))
    assert "read 901 rows: 900 accepted, 1 quarantined" in out
    assert 'warning: 1 rows quarantined for an event time after the clock plus [data] event_time_future = "1d"' in out
    shown = ok(home, "data", "quarantine", "subs")
    assert "logged_at: after" in shown and 'event_time_future = "1d"' in shown
    # History has no past bound (its age is what it is), but a refusal for volume says over which days it counted
    old = pl.when(pl.col("session_id") == 10**6).then(datetime(1971, 1, 1)).otherwise(pl.col("logged_at"))
    batch.with_columns(logged_at=old.cast(schema["logged_at"])).write_parquet(tmp_path / "old.parquet")
    code, _, err = cli(home, "ingest", "subs", str(tmp_path / "old.parquet"))
    assert code == 1 and "accepted rows per day over its 20," in err and "(1971-01-01 .. 2026-03-" in err, err


def test_a_feature_named_like_the_appliances_own_columns_is_refused(tmp_path: Path):
    spec = write_loans(tmp_path / "data", days=4, live_days=1)
    for declared in (spec, spec.parent / "contract.toml"):  # a column so named, in the data and its spec
        declared.write_text(declared.read_text().replace('name = "grade"', 'name = "_score"'))
    code, _, err = cli(tmp_path / "home", "init", "--spec", str(spec))
    assert code == 1 and err.count("\n") == 1 and "['_score'] start with '_'" in err, err

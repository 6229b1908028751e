"""Like with like: a version and production compared on the same rows — in `appliance models`, in the
dashboard's promote confirmation and in the gates — and the rows named. On data unlike the sample: integer
subscriber keys with an entity file and windowed aggregations (binary), text-classed tickets with no entity
(multiclass), string courier keys (regression)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from conftest import in_production, running_server
from own_data import write_subscriptions
from task_data import write_deliveries, write_tickets
from test_tui import settle

from appliance.cli import main
from appliance.home import Home
from appliance.replay import replay
from appliance.scoring.metrics import score
from appliance.task import Task
from appliance.validation.comparison import LabelledTraffic, compare_with_production, version_output
from appliance.validation.paired import bootstrap_interval, delong_interval
from tui.app import Dashboard


def _cli(home: Path, *args: str) -> None:
    assert main(["--home", str(home), *args]) == 0, args


def _no_monitor(root: Path, model: str, say) -> None:
    return None


@pytest.fixture(scope="module")
def issue_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's case. v1, trained here, serves. v2 was trained elsewhere on a pattern that no longer holds (the
    more minutes, the likelier a cancellation) and registered with an evaluation file where it does hold: its own
    evaluation says far better than v1's. Then four live days, where the true pattern holds, are served and
    labelled through the API."""
    tmp = tmp_path_factory.mktemp("issue")
    spec = write_subscriptions(tmp / "data", per_day=300)
    home = tmp / "home"
    in_production(home, spec)
    history = pl.read_parquet(spec.parent / "history.parquet")
    rng = np.random.default_rng(4)
    fake = history.with_columns(
        cancelled=pl.Series((history["minutes"].to_numpy() + rng.normal(0, 4, history.height) > 30).astype(np.int64))
    )
    # The outside team's matrix: the spec's eight inputs in order, minutes first; the rest carry nothing.
    x = np.column_stack([fake["minutes"].to_numpy(), rng.normal(size=(fake.height, 7))]).astype(np.float32)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": 1, "num_threads": 1},
        lgb.Dataset(x, fake["cancelled"].to_numpy()),
        num_boost_round=20,
    )
    booster.save_model(str(tmp / "elsewhere.txt"))
    their_days = history["logged_at"].max().replace(hour=0, minute=0, second=0) - timedelta(days=3)
    fake.filter(pl.col("logged_at") >= their_days).write_parquet(tmp / "their_eval.parquet")
    _cli(home, "register", "subs", "--lightgbm", str(tmp / "elsewhere.txt"), "--eval", str(tmp / "their_eval.parquet"))
    with running_server(home) as server:
        replay(home, "subs", server.url, speed=0, label_delay_hours=0, monitor=_no_monitor)
    return home


def test_a_candidate_worse_on_live_data_than_its_own_evaluation_says_does_not_show_as_better(issue_home: Path):
    with Home(issue_home) as home:
        v1, v2 = home.registry.version("subs", 1), home.registry.version("subs", 2)
        assert v2.metrics["auc"] > v1.metrics["auc"] + 0.05  # the registry's numbers: v2 looks better
        compared = compare_with_production(home, "subs", 2)
    d = compared.difference
    assert compared.rows_from == "live" and compared.production == 1
    assert d.candidate < d.production and d.high < 0 and d.verdict == "worse"
    assert d.method == "DeLong" and compared.rows_label.startswith("live labelled window")


def test_live_rows_get_the_features_serving_saw(issue_home: Path):
    """Recomputed point in time over the snapshots and the answered requests, a logged row's stored features are
    those the online store served it with: production's output on them is the score it logged. (A row whose own
    request held an earlier row of its subscriber differs: serving completes a request's rows together.)"""
    with Home(issue_home) as home:
        spec = home.spec("subs")
        traffic = LabelledTraffic(home, spec)
        rows = traffic.features(traffic.labelled)
        recomputed = version_output(home, "subs", 1, rows, Task())
    served = traffic.labelled["_score"].to_numpy()
    first_of_subscriber = (
        traffic.labelled.select(pl.int_range(pl.len()).over("_request_id", "subscriber") == 0).to_series().to_numpy()
    )
    assert rows.height == 1205 and first_of_subscriber.sum() > 1000
    assert np.allclose(recomputed[first_of_subscriber], served[first_of_subscriber], atol=1e-6)


def test_models_lists_each_version_against_production_on_the_same_rows_and_names_them(issue_home: Path, capsys):
    capsys.readouterr()
    _cli(issue_home, "models", "subs")
    out = capsys.readouterr().out
    assert "AUC and F1: each version on its own evaluation rows" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("v2 AUC"))
    assert re.search(
        r"v2 AUC 0\.\d{4} vs production v1 0\.\d{4} on the same rows: -0\.\d{4} \(95 % DeLong "
        r"interval -0\.\d{4} … -0\.\d{4}\), worse — live labelled windows? 2026-03-",
        line,
    ), line
    assert re.search(r", [\d,]+ rows$", line), line


def test_the_promote_confirmation_shows_the_comparison_not_the_registry_metrics(issue_home: Path):
    app = Dashboard(issue_home, refresh_seconds=0)
    seen = {}

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("2")
            await settle(pilot)
            await pilot.press("p")  # v2, the newest, is selected
            await settle(pilot)
            seen["title"] = str(app.screen.query_one("#title").content)
            seen["body"] = str(app.screen.query_one("#body").content)
            await pilot.press("n")
            await settle(pilot)

    asyncio.run(main())
    assert seen["title"].startswith("Promote subs v2 to production (now v1)")
    body = seen["body"]
    assert "against production v1, both scored on the same rows" in body
    assert re.search(r"v2 AUC .* on the same rows: -0\.\d{4} .*, worse — live labelled window", body), body
    assert "prod " not in body  # no registry metric set against production's (the issue's "+0.004 AUC")
    with Home(issue_home) as home:
        assert home.registry.alias("subs", "production") == 1


def test_without_live_labels_both_score_the_newer_evaluation_rows_as_the_gates_did(tmp_path: Path, capsys):
    """A multiclass model with no entity, from a CSV with text times: v2 trained after three more labelled days
    were ingested, and no traffic has come back. Both versions score v2's evaluation days — whichever of the two
    serves — and production's value there is the one v2's no_regression gate found."""
    spec = write_tickets(tmp_path / "data")
    home = tmp_path / "home"
    _cli(home, "init", "--spec", str(spec))
    _cli(home, "train", "triage")
    _cli(home, "promote", "triage", "1")
    _cli(home, "ingest", "triage", str(spec.parent / "live.csv"))
    _cli(home, "train", "triage")
    with Home(home) as h:
        v1, v2 = h.registry.version("triage", 1), h.registry.version("triage", 2)
        compared = compare_with_production(h, "triage", 2)
        h.registry.promote("triage", 2)
        older = compare_with_production(h, "triage", 1)  # the older version, now the candidate
    d = compared.difference
    assert compared.rows_from == "evaluation" and d.metric == "macro_f1"
    assert compared.rows_label == f"v2's evaluation days 2026-07-15..2026-07-17, {int(v2.metrics['rows']):,} rows"
    assert compared.note.startswith("no live labelled rows from 2026-07-15 on")
    assert d.candidate == pytest.approx(v2.metrics["macro_f1"], abs=1e-4)  # v2's own rows: its own value
    assert d.production != pytest.approx(v1.metrics["macro_f1"], abs=1e-4)  # v1's on them is not its own
    gate = next(c for c in v2.gate_report["checks"] if c["name"] == "no_regression")
    assert (
        f"vs production v1 {d.production:.4f} on the same rows (this run's evaluation days 2026-07-15..2026-07-17"
        in gate["detail"]
        and "paired bootstrap, 400 resamples interval" in gate["detail"]
    )
    assert d.method == "paired bootstrap, 400 resamples" and d.low <= d.value <= d.high
    assert older.rows_label == compared.rows_label and older.difference.value == pytest.approx(-d.value)
    capsys.readouterr()
    _cli(home, "models", "triage")
    out = capsys.readouterr().out
    assert re.search(
        r"v1 macro F1 0\.\d{4} vs production v2 0\.\d{4} on the same rows: [-+]0\.\d{4} \(95 % paired "
        r"bootstrap, 400 resamples interval .*\), .* — v2's evaluation days 2026-07-15\.\.2026-07-17, "
        r"[\d,]+ rows; no live labelled rows",
        out,
    ), out
    # Once those days' tickets are served and labelled, the newest live day is the rows
    _cli(home, "features", "materialize", "triage")
    with running_server(home) as server:
        replay(home, "triage", server.url, speed=0, label_delay_hours=0, monitor=_no_monitor)
    with Home(home) as h:
        live = compare_with_production(h, "triage", 1)
    assert live.rows_from == "live" and live.note == ""
    assert re.fullmatch(r"live labelled window 2026-07-17, [\d,]+ rows", live.rows_label), live.rows_label


def test_a_retrain_is_compared_on_the_live_day_it_held_out(tmp_path: Path, capsys):
    """Regression with string courier keys and a windowed count: after the live days are served and labelled, a
    retrain holds out the newest labelled day; `models` compares it with production on that live day, and finds
    production's RMSE there as the retrain's own gate did."""
    spec = write_deliveries(tmp_path / "data", per_day=300)
    home = tmp_path / "home"
    in_production(home, spec)
    with running_server(home) as server:
        replay(home, "eta", server.url, speed=0, label_delay_hours=0, monitor=_no_monitor)
    _cli(home, "train", "eta", "--retrain")
    with Home(home) as h:
        compared = compare_with_production(h, "eta", 2)
        gate = next(c for c in h.registry.version("eta", 2).gate_report["checks"] if c["name"] == "no_regression")
    d = compared.difference
    assert compared.rows_from == "live" and d.metric == "rmse" and d.method.startswith("paired bootstrap")
    assert re.fullmatch(r"live labelled window 2026-\d\d-\d\d, [\d,]+ rows", compared.rows_label)
    day = compared.rows_label.split()[3].rstrip(",")
    assert (
        f"vs production v1 {d.production:.6g} on the same rows (this run's evaluation day {day}, "
        f"{compared.rows:,} rows)" in gate["detail"]
    ), gate["detail"]
    capsys.readouterr()
    _cli(home, "models", "eta")
    assert f"v2 RMSE {d.candidate:.6g} vs production v1 {d.production:.6g} on the same rows" in capsys.readouterr().out


def test_the_intervals_cover_a_known_difference_and_shrink_to_nothing_for_one_model():
    rng = np.random.default_rng(7)
    y = rng.random(4000) < 0.15
    a = y + rng.normal(0, 1.0, y.size)
    low, high = delong_interval(y, a, a)
    assert low == high == 0.0
    b = y * 0.6 + rng.normal(0, 1.0, y.size)
    low, high = delong_interval(y, a, b)
    boot = bootstrap_interval(Task(), "auc", y.astype(int), a, b)
    truth = score(Task(), "auc", y.astype(int), a) - score(Task(), "auc", y.astype(int), b)
    assert low < truth < high and abs(boot[0] - low) < 0.01 and abs(boot[1] - high) < 0.01
    assert np.isnan(delong_interval(np.array([1, 0, 0]), np.ones(3), np.zeros(3))[0])  # one positive

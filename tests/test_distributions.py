"""Reference-vs-current distributions: the bins (deciles of the reference's numbers, its 12 most common
categories, then "(other)" and "(missing)"), recorded by the monitor job per window and feature with the
window's results, read back through the story in the model's feature order, and pruned by retention.

The data sets are unlike the sample: a regression on string courier keys (``task_data.deliveries``) end to
end, and generated frames with integer codes, 30 text categories, a skewed number and nulls for the bins."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import running_server
from task_data import write_deliveries

from appliance.cli import main
from appliance.home import Home
from appliance.monitoring.distributions import MISSING, OTHER, FeatureBins, fit_bins, window_distributions
from appliance.monitoring.store import open_monitoring
from appliance.monitoring.story import distributions, monitoring_story
from appliance.monitoring.windows import EventWindows
from appliance.replay import replay
from appliance.retention import apply_retention
from appliance.settings import RetentionSection
from appliance.spec import Feature

DAY = datetime(2026, 5, 4, tzinfo=UTC)


def _frame(rng: np.random.Generator, n: int, days: int, shift: float = 0.0) -> pl.DataFrame:
    codes = rng.choice([7, 11, 13, 17], n, p=[0.4, 0.3, 0.2, 0.1])
    return pl.DataFrame(
        {
            "at": [DAY + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, days * 86400, n))],
            "weight": pl.Series(rng.lognormal(3 + shift, 1.0, n)).scatter(np.flatnonzero(rng.random(n) < 0.05), None),
            "code": codes,  # an integer declared as a number: few distinct values, so fewer than 10 bins
            "shop": [f"s{k:02d}" for k in rng.zipf(1.6, n) % 30],
            "express": rng.random(n) < 0.2,
        }
    )


FEATURES = [
    Feature("weight", "float"),
    Feature("code", "integer"),
    Feature("shop", "category"),
    Feature("express", "boolean"),
]


def test_bins_are_the_references_deciles_and_most_common_values_then_other_and_missing():
    rng = np.random.default_rng(3)
    reference = _frame(rng, 5_000, 10)
    live = _frame(rng, 3_000, 3, shift=1.0).with_columns(
        shop=pl.when(pl.int_range(pl.len()) < 300).then(pl.lit("brand-new")).otherwise("shop")
    )
    bins = fit_bins(reference, [*FEATURES, Feature("absent", "float")])
    assert [b.name for b in bins] == ["weight", "code", "shop", "express"]  # a column it lacks has none
    weight, code, shop, express = bins
    assert weight.kind == "numeric" and len(weight.labels) == 10 + 1  # deciles, then (missing)
    assert weight.labels[0].startswith("< ") and weight.labels[-2].startswith("≥ ") and weight.labels[-1] == MISSING
    assert len(code.labels) - 1 <= 4  # four distinct codes: repeated decile edges merge
    top = reference["shop"].value_counts(sort=True)["shop"].head(12).to_list()
    assert (
        shop.kind == "categorical" and sorted(shop.labels[:12]) == sorted(top) and shop.labels[12:] == [OTHER, MISSING]
    )
    assert set(express.labels[:2]) == {"true", "false"}

    windows = EventWindows(live, "at", "1d")
    starts = windows.starts.to_list()
    found = window_distributions(bins, live, windows, starts[1:])
    assert found["window_start"].unique().sort().to_list() == starts[1:]  # only the windows asked for
    assert found.filter(window_start=starts[1])["feature"].to_list() == ["weight", "code", "shop", "express"]
    for row in found.iter_rows(named=True):
        labels, ref, cur = (pl.Series(json_list(row[c])) for c in ("labels", "reference", "current"))
        assert len(labels) == len(ref) == len(cur)
        assert ref.sum() == pytest.approx(1, abs=1e-5) and cur.sum() == pytest.approx(1, abs=1e-5)
        assert row["reference_rows"] == 5_000
        if row["feature"] == "weight":  # nulls in both: (missing) stays; the shift moves mass to the top bins
            assert labels[-1] == MISSING and cur[-2] > 3 * ref[-2]
        if row["feature"] == "express":  # no (other), no (missing): nothing fell there
            assert OTHER not in labels.to_list() and MISSING not in labels.to_list()
    first = found.filter(window_start=starts[1], feature="shop").row(0, named=True)
    assert json_list(first["labels"])[-1] == OTHER  # the new shop's rows are "(other)"
    assert first["current_rows"] == windows.rows()[1]


def test_a_window_without_rows_has_zero_shares_and_an_empty_reference_one_bin():
    reference = pl.DataFrame(
        {"at": [DAY], "weight": [None]}, schema={"at": pl.Datetime("us", "UTC"), "weight": pl.Float64}
    )
    [weight] = fit_bins(reference, [Feature("weight", "float")])
    assert weight.labels == ["all values", MISSING]
    live = pl.DataFrame({"at": [DAY, DAY + timedelta(days=2)], "weight": [1.0, 2.0]})
    windows = EventWindows(live, "at", "1d")
    empty = window_distributions([weight], live, windows, [DAY + timedelta(days=1)]).row(0, named=True)
    assert empty["current_rows"] == 0 and json_list(empty["current"]) == [0.0, 0.0]
    assert json_list(empty["reference"]) == [0.0, 1.0]


def test_edges_that_round_alike_are_written_with_more_digits():
    column = pl.Series("x", np.repeat(np.linspace(1234.50, 1234.59, 10), 10))
    bins = FeatureBins.fit(Feature("x", "float"), column)
    assert len(set(bins.labels)) == len(bins.labels)


def json_list(text: str) -> list:
    return json.loads(text)


def _cli(home: Path, *args: str) -> None:
    assert main(["--home", str(home), *args]) == 0, args


def test_the_monitor_job_records_each_windows_distributions_and_retention_prunes_them(tmp_path: Path, capsys):
    spec = write_deliveries(tmp_path / "data", per_day=300)
    home = tmp_path / "home"
    _cli(home, "init", "--spec", str(spec))
    _cli(home, "ingest", "eta", str(spec.parent / "history.parquet"))
    _cli(home, "train", "eta")
    _cli(home, "promote", "eta", "1")
    _cli(home, "features", "materialize", "eta")
    with Home(home) as h:
        assert distributions(h, "eta", 1) == []  # nothing monitored yet
    with running_server(home) as server:
        days = replay(home, "eta", server.url, speed=0, label_delay_hours=0)  # the monitor job at each day's end
    _cli(home, "jobs", "run", "monitor", "eta")
    capsys.readouterr()

    with Home(home) as h:
        story = monitoring_story(h, "eta")
        newest = distributions(h, "eta", 1)
        first = distributions(h, "eta", 1, story.windows[0])
    assert story.windows == [datetime.fromisoformat(d.day).replace(tzinfo=UTC) for d in days]
    assert (story.metric, story.lower_is_better, story.served_version) == ("rmse", True, 1)
    assert story.performance["realized"].null_count() == 0  # every day was labelled at once
    assert set(story.operations["check"]) >= {"machine", "pipeline"}
    features = ["distance_km", "zone", "rush", "items", "vehicle"]  # the spec's request fields, then attributes
    assert [d.feature for d in newest] == features
    assert {d.window_start for d in newest} == {story.windows[-1]}
    assert {d.window_start for d in first} == {story.windows[0]}
    served = dict(zip(story.traffic["window_start"], story.performance["rows"]))
    for d in first:
        assert d.kind == ("numeric" if d.feature in ("distance_km", "items") else "categorical")
        assert len(d.labels) == len(d.reference) == len(d.current)
        assert sum(d.reference) == pytest.approx(1, abs=1e-5) and sum(d.current) == pytest.approx(1, abs=1e-5)
        assert d.current_rows == served[d.window_start]
    distance = next(d for d in first if d.feature == "distance_km")
    assert len(distance.labels) == 10 and all(0.04 < s < 0.16 for s in distance.reference)  # deciles

    conn = open_monitoring(home)
    try:
        kept = conn.execute("SELECT COUNT(*) FROM distributions").fetchone()[0]
    finally:
        conn.close()
    assert kept == len(days) * len(features)  # a window recomputed replaced its rows, never added to them
    # A year later, past the archive's keep: the windows' distributions go with the log's days.
    later = (story.windows[-1] + timedelta(days=365)).timestamp()
    report = apply_retention(home, RetentionSection(hot_days=1, archive_days=30), now=later)
    assert report.pruned_distributions == kept
    with Home(home) as h:
        assert distributions(h, "eta", 1) == []
        assert monitoring_story(h, "eta").windows == story.windows  # the results stay

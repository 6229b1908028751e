"""Data identity across batches: a contract's unique value names one row in every batch of a model (a corrected
re-export under ``on_repeat = "replace"`` or ``"reject"``), and rows without one are each an event, however alike.

Generated parcel scans unlike the sample: integer or string ids, integer or string courier keys, a few hundred
rows a day, through the CLI (`ingest`, `data quarantine`, `train`) on a real data directory.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from appliance.data.snapshots import list_snapshots, read_snapshots
from appliance.home import Home
from appliance.training.runs import pipeline_run
from tests.conftest import cli, ok
from tests.own_data import spec_text


def contract(id_type: str | None, on_repeat: str | None = None, key_type: str = "string") -> str:
    """The parcels' contract: with an id field of ``id_type`` (unique; ``on_repeat`` as given), or none. The id
    field goes before the file's [contract] table, which TOML allows, so that it stays the first field."""
    text = spec_text("parcels", "contract.toml", key_type=key_type)
    if id_type is None:
        return text
    repeat = f'on_repeat = "{on_repeat}"\n' if on_repeat else ""
    return f'[[fields]]\nname = "parcel"\ntype = "{id_type}"\nnullable = false\nunique = true\n{repeat}\n{text}'


def parcels(
    id_type: str | None,
    days: int = 12,
    per_day: int = 150,
    first: int = 0,
    seed: int = 0,
    start: datetime = datetime(2026, 2, 2),
) -> pl.DataFrame:
    """Parcel scans, ``first`` numbering their ids; integer ids with integer courier keys, string ids
    ('PX-000123') with string keys ('depot-7/c3'). Lateness follows weight and service."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    seconds = np.sort(rng.integers(0, days * 86400, n))
    service = rng.choice(["standard", "express", "freight"], n)
    weight = np.round(rng.gamma(2.0, 4.0, n), 2)
    logit = -1.5 + 0.12 * weight - 1.2 * (service == "express") + 0.8 * (service == "freight")
    couriers = rng.integers(1, 25, n)
    frame = pl.DataFrame(
        {
            "scanned_at": [start + timedelta(seconds=int(s)) for s in seconds],
            "courier": couriers if id_type == "integer" else [f"depot-{c % 4}/c{c}" for c in couriers],
            "weight_kg": weight,
            "service": service,
            "late": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
        }
    )
    ids = np.arange(first, first + n)
    if id_type == "integer":
        return frame.insert_column(0, pl.Series("parcel", 700_000 + ids))
    if id_type == "string":
        return frame.insert_column(0, pl.Series("parcel", [f"PX-{i:06d}" for i in ids]))
    return frame


def model_folder(
    folder: Path,
    id_type: str | None,
    on_repeat: str | None = None,
    source: str = "history.parquet",
    name: str = "parcels",
) -> Path:
    """The spec and contract of a parcels model in ``folder``; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    key_type = "integer" if id_type == "integer" else "string"
    (folder / "contract.toml").write_text(contract(id_type, on_repeat, key_type))
    spec = folder / f"{name}.toml"
    spec.write_text(spec_text("parcels", "spec.toml", name=name, source=source))
    return spec


def ingested(out: str) -> tuple[int, int]:
    """(accepted, quarantined) as `ingest` prints them."""
    found = re.search(r"([\d,]+) accepted, ([\d,]+) quarantined", out)
    assert found, out
    return int(found[1].replace(",", "")), int(found[2].replace(",", ""))


def training_set(home: Path, model: str, version: int) -> pl.DataFrame:
    """The training frame a registered version was trained on, as its run stored it."""
    with Home(home) as opened:
        run = pipeline_run(opened.conn, opened.registry.version(model, version).run_id)
        features = next(s for s in run.stages if s.stage == "features")
        return pl.read_parquet(opened.offline.path(f"{model}/training_sets", features.outputs["training_set"]))


def corrected_reexport(history: pl.DataFrame, days: int, corrected: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The last ``days`` days of ``history`` exported again with ``corrected`` rows' weights changed (the same
    ids), and the rows changed, as they are after the correction."""
    since = history["scanned_at"].max() - timedelta(days=days)
    again = history.filter(pl.col("scanned_at") > since)
    fixed = np.zeros(again.height, dtype=bool)
    fixed[np.random.default_rng(9).choice(again.height, corrected, replace=False)] = True
    again = again.with_columns(
        weight_kg=pl.when(pl.Series(fixed)).then(pl.col("weight_kg") + 1.25).otherwise(pl.col("weight_kg"))
    )
    return again, again.filter(pl.Series(fixed))


@pytest.mark.parametrize(("id_type", "on_repeat"), [("integer", "replace"), ("string", "reject")])
def test_a_corrected_reexport_is_one_version_of_each_row_in_training(tmp_path, id_type, on_repeat):
    spec = model_folder(tmp_path / "spec", id_type, on_repeat)
    history = parcels(id_type)
    history.write_parquet(tmp_path / "spec" / "history.parquet")
    again, fixed = corrected_reexport(history, days=4, corrected=90)
    again.write_parquet(tmp_path / "reexport.parquet")
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    first = ok(home, "ingest", "parcels", str(tmp_path / "spec" / "history.parquet"))
    held = re.search(r"snapshot ([0-9a-f]{12})", first)[1]

    out = ok(home, "ingest", "parcels", str(tmp_path / "reexport.parquet"))
    if on_repeat == "replace":
        assert ingested(out) == (again.height, 0)
        assert f"warning: 90 rows replace the rows with the same parcel in snapshot(s) {held}" in out
    else:
        assert ingested(out) == (again.height - 90, 90)
        assert "warning: 90 rows repeat parcel values that snapshot(s)" in out and 'on_repeat = "replace"' in out
        shown = ok(home, "data", "quarantine", "parcels", "--limit", "200")
        assert re.search(rf"^90 +parcel: … is held with other values by snapshot {held}$", shown, re.M)  # counted once
        for parcel in fixed["parcel"].head(3):  # each row's reason names its id
            value = f"'{parcel}'" if id_type == "string" else str(parcel)
            one = ok(home, "data", "quarantine", "parcels", "--reason", f"parcel: {value} is held")
            assert one.startswith("1 quarantined rows") and f"{parcel}" in one

    trained = ok(home, "train", "parcels")  # ingests the source again: the same content, no new snapshot
    assert f"data valid: {history.height:,} rows" in trained
    frame = training_set(home, "parcels", 1)
    assert frame.height == history.height  # each parcel once, in whichever version the policy keeps
    weights = sorted(frame["weight_kg"].to_list())
    newest = history.join(fixed.select("parcel", "weight_kg"), on="parcel", how="left", suffix="_fixed")
    kept = newest["weight_kg_fixed"].fill_null(newest["weight_kg"]) if on_repeat == "replace" else newest["weight_kg"]
    assert weights == pytest.approx(sorted(kept.to_list()))


def test_identical_events_in_two_batches_are_two_events_without_an_id(tmp_path):
    spec = model_folder(tmp_path / "spec", None)
    history = parcels(None, seed=1)
    history.write_parquet(tmp_path / "spec" / "history.parquet")
    # A later export of genuine scans, five of them alike in every column to scans the first export holds
    # (without an id nothing tells them apart: two batches holding a row hold two events).
    later = pl.concat([parcels(None, days=3, seed=2, start=datetime(2026, 2, 14)), history.tail(5)])
    later.write_parquet(tmp_path / "later.parquet")
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    assert ingested(ok(home, "ingest", "parcels", str(tmp_path / "later.parquet"))) == (later.height, 0)
    trained = ok(home, "train", "parcels")
    total = history.height + later.height
    assert f"data valid: {total:,} rows" in trained
    assert training_set(home, "parcels", 1).height == total
    # The same file ingested again is the same batch: recognised by its content hash, not counted twice.
    again = ok(home, "ingest", "parcels", str(tmp_path / "later.parquet"))
    assert "(identical content: unchanged)" in again
    with Home(home) as opened:
        snapshots = list_snapshots(opened.conn, "parcels")
        assert len(snapshots) == 2
        assert read_snapshots(opened.offline, snapshots).height == total


@pytest.mark.parametrize(("id_type", "on_repeat"), [("integer", "reject"), ("string", "replace")])
def test_a_folder_read_again_and_a_batch_ingested_twice_count_each_row_once(tmp_path, id_type, on_repeat):
    spec = model_folder(tmp_path / "spec", id_type, on_repeat, source="exports")
    exports = tmp_path / "spec" / "exports"
    exports.mkdir()
    history = parcels(id_type, days=9, per_day=80, seed=3)
    day = pl.col("scanned_at").dt.date()
    days = [history.filter(day == d) for d in history.select(day.unique(maintain_order=True)).to_series()]
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    for i, day in enumerate(days[:6]):
        day.write_parquet(exports / f"day-{i:02d}.parquet")
    assert ingested(ok(home, "ingest", "parcels", str(exports))) == (sum(d.height for d in days[:6]), 0)
    for i, day in enumerate(days[6:], start=6):  # the folder grows; each ingest reads every file again
        day.write_parquet(exports / f"day-{i:02d}.parquet")
        out = ok(home, "ingest", "parcels", str(exports))
        assert ingested(out) == (sum(d.height for d in days[: i + 1]), 0) and "warning" not in out
    assert "(identical content: unchanged)" in ok(home, "ingest", "parcels", str(exports))
    with Home(home) as opened:
        events = read_snapshots(opened.offline, list_snapshots(opened.conn, "parcels"))
    assert events.height == history.height and events["parcel"].n_unique() == history.height


def test_a_correction_rejected_stays_rejected_when_its_batch_comes_again(tmp_path):
    spec = model_folder(tmp_path / "spec", "integer")  # on_repeat left out: reject
    history = parcels("integer", days=6, seed=4)
    history.write_parquet(tmp_path / "spec" / "history.parquet")
    again, fixed = corrected_reexport(history, days=2, corrected=10)
    again.write_parquet(tmp_path / "reexport.parquet")
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    ok(home, "ingest", "parcels", str(tmp_path / "spec" / "history.parquet"))
    first = ok(home, "ingest", "parcels", str(tmp_path / "reexport.parquet"))
    assert ingested(first) == (again.height - 10, 10) and "(new)" in first
    second = ok(home, "ingest", "parcels", str(tmp_path / "reexport.parquet"))
    assert ingested(second) == (again.height - 10, 10) and "(identical content: unchanged)" in second
    # Every row of a batch a correction: refused whole, nothing written, and the way out said.
    fixed.write_parquet(tmp_path / "only-fixes.parquet")
    code, _, err = cli(home, "ingest", "parcels", str(tmp_path / "only-fixes.parquet"))
    assert code == 1 and err.startswith("error: every one of the 10 rows") and 'on_repeat = "replace"' in err
    assert err.count("\n") == 1
    with Home(home) as opened:
        snapshots = list_snapshots(opened.conn, "parcels")
        assert len(snapshots) == 2
        events = read_snapshots(opened.offline, snapshots)
    columns = ["parcel", "weight_kg", "service", "late"]  # each parcel once, as first held
    assert events.select(columns).sort("parcel").equals(history.select(columns).sort("parcel"))


def test_null_ids_identify_nothing(tmp_path):
    spec = model_folder(tmp_path / "spec", "integer", "replace")
    (tmp_path / "spec" / "contract.toml").write_text(
        contract("integer", "replace", "integer").replace(
            'name = "parcel"\ntype = "integer"\nnullable = false', 'name = "parcel"\ntype = "integer"'
        )
    )
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    batches = [parcels("integer", days=2, seed=s, first=1000 * s) for s in (5, 6)]
    for i, batch in enumerate(batches):  # a third of each batch has no id (labelled traffic may not)
        batch.with_columns(
            parcel=pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise("parcel")
        ).write_parquet(tmp_path / f"b{i}.parquet")
        assert ingested(ok(home, "ingest", "parcels", str(tmp_path / f"b{i}.parquet"))) == (batch.height, 0)
    with Home(home) as opened:
        events = read_snapshots(opened.offline, list_snapshots(opened.conn, "parcels"))
    assert events.height == sum(b.height for b in batches)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('unique = true\non_repeat = "sometimes"', "on_repeat"),
        ('on_repeat = "replace"', "\"replace\" needs unique = true on field 'parcel'"),
    ],
)
def test_a_bad_on_repeat_is_one_error_line(tmp_path, rule, message):
    spec = model_folder(tmp_path / "spec", None)
    text = (tmp_path / "spec" / "contract.toml").read_text()
    (tmp_path / "spec" / "contract.toml").write_text(
        text + f'\n[[fields]]\nname = "parcel"\ntype = "integer"\n{rule}\n'
    )
    parcels("integer").write_parquet(tmp_path / "batch.parquet")
    home = tmp_path / "home"
    code, _, err = cli(home, "init", "--spec", str(spec))
    if code == 0:
        code, _, err = cli(home, "ingest", "parcels", str(tmp_path / "batch.parquet"))
    assert code == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "fields[5]" in err

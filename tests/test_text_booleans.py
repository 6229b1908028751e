"""Text booleans: a file's yes/no (or y/n) column is drafted as a boolean, ingested as one, and a request sends
it as JSON true/false, as every boolean feature is sent."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
from conftest import cli, ok

from appliance.training.feedback_batch import contract_value


def _orders(path: Path) -> Path:
    r = np.random.default_rng(21)
    n = 2400
    gift = r.random(n) < 0.3
    weight = r.random(n) * 20
    late = r.random(n) < 1 / (1 + np.exp(-(weight - 12) / 3 - 1.2 * gift))
    pl.DataFrame(
        {
            "placed": [dt.datetime(2026, 9, 1) + dt.timedelta(minutes=9 * i) for i in range(n)],
            "weight": weight,
            "gift": np.where(gift, "Yes", "no"),  # any case
            "fragile": np.where(r.random(n) < 0.5, "Y", "N"),
            "late": late.astype(int),
        }
    ).write_csv(path)
    return path


def test_yes_no_columns_are_booleans_from_the_draft_to_the_answer(tmp_path: Path):
    source = _orders(tmp_path / "orders.csv")
    home = tmp_path / "home"
    out = ok(home, "init", "--from", str(source), "--target", "late", "--out", str(tmp_path))
    assert 'column \'gift\': boolean (text that is only "yes"/"no" (any case), read as true/false)' in out, out
    assert 'column \'fragile\': boolean (text that is only "y"/"n"' in out, out
    spec = (tmp_path / "orders.toml").read_text()
    assert '{ name = "gift", type = "boolean" }' in spec and '{ name = "fragile", type = "boolean" }' in spec

    trained = ok(home, "train", "orders")
    assert "2,400 accepted, 0 quarantined" in trained, trained  # every Yes/no and Y/N read
    ok(home, "promote", "orders", "1")
    record = {"placed": "2026-09-16T10:00:00Z", "weight": 18.5, "gift": True, "fragile": False}
    answer = json.loads(ok(home, "predict", "orders", "--json", json.dumps(record)))
    assert answer["label"] in (0, 1) and 0 <= answer["probability"] <= 1
    code, _, err = cli(home, "predict", "orders", "--json", json.dumps({**record, "gift": "yes"}))
    assert code != 0 and "feature 'gift' must be true or false" in err, err


def test_a_logged_text_boolean_reads_back_as_the_contract_reads_a_file():
    assert [contract_value(v, "boolean") for v in ("yes", " NO ", "y", "n", "true", "0")] == [
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    assert contract_value("maybe", "boolean") == "maybe"  # left for the contract check to quarantine

"""Feature names with the characters other engines treat as syntax — LightGBM refuses JSON's [ ] { } " , :
in a name, SQLite reads ' and " in its literals and JSON paths — through the whole loop: a spec drafted by
`init --from`, training, ONNX parity, in-process answers, materialized and live-updated online features."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import cli, ok, running_server

# Every name a data column may carry; the entity key and the aggregations are named awkwardly too.
KEY, SCORE, GROUP, SPEND = "cust:id", "2nd.score [%]", 'grp"q', "sale price €"
COUNT, MEAN = "n,1d [x]", "it's mean {7d}"


def _history(path: Path, rows: int = 1500) -> None:
    r = np.random.default_rng(23)
    score, group = r.random(rows) * 100, r.choice(["u", "v", "w"], rows)
    logit = (score - 50) / 20 + (group == "u") * 1.5
    pl.DataFrame(
        {
            "at": [dt.datetime(2026, 3, 2) + dt.timedelta(minutes=11 * i) for i in range(rows)],
            KEY: r.integers(1, 60, rows),
            SCORE: score,
            GROUP: group,
            SPEND: r.gamma(2.0, 10.0, rows),
            "a,b": r.normal(size=rows),
            "a:b": r.integers(0, 5, rows),
            "a{b}": r.normal(size=rows),
            "it's": r.random(rows) < 0.5,
            "x.y": r.normal(size=rows),
            "outcome": r.random(rows) < 1 / (1 + np.exp(-logit)),
        }
    ).write_parquet(path)


@pytest.fixture(scope="module")
def named_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data directory, spec) of a model over every awkward name, drafted by `init --from`, given an entity
    with two aggregations, trained with LightGBM, promoted and materialized."""
    tmp = tmp_path_factory.mktemp("names")
    _history(tmp / "odd.parquet")
    home = tmp / "home"
    ok(home, "init", "--from", str(tmp / "odd.parquet"), "--target", "outcome", "--out", str(tmp / "spec"))
    spec = tmp / "spec" / "odd.toml"
    text = spec.read_text()
    drafted = '[features]\nevent_time = "at"\n'
    assert drafted in text
    keyed = f'    {{ name = {json.dumps(KEY)}, type = "integer" }},\n'  # drafted as a request feature; now the key
    assert keyed in text
    spec.write_text(
        text.replace(keyed, "").replace(
            drafted,
            drafted + f"entity_key = {json.dumps(KEY)}\naggregations = [\n"
            f'    {{ name = {json.dumps(COUNT)}, function = "count", window = "1d" }},\n'
            f'    {{ name = {json.dumps(MEAN)}, function = "mean", window = "7d",'
            f" column = {json.dumps(SPEND)} }},\n]\n",
        )
    )
    home_two = tmp / "entity"  # the drafted model is registered in the first; this one reads the edited spec
    ok(home_two, "init", "--spec", str(spec))
    out = ok(home_two, "train", "odd")
    assert "gate onnx_parity: pass" in out and "registered odd v1" in out
    ok(home_two, "promote", "odd", "1")
    ok(home_two, "features", "materialize", "odd")
    return home_two, spec


def _record(entity: int, at: str) -> dict:
    return {
        KEY: entity,
        "at": at,
        SCORE: 81.5,
        GROUP: "u",
        SPEND: 40.0,
        "a,b": 0.2,
        "a:b": 3,
        "a{b}": -1.0,
        "it's": True,
        "x.y": 0.5,
    }


def test_a_model_over_every_awkward_name_trains_and_answers(named_home):
    home, _ = named_home
    code, out, err = cli(home, "predict", "odd", "--json", json.dumps(_record(7, "2026-03-13T09:00:00Z")))
    assert code == 0, err
    assert 0.0 <= json.loads(out)["probability"] <= 1.0
    shown = json.loads(ok(home, "features", "show", "odd", "7"))
    assert shown[COUNT] >= 1 and shown[MEAN] > 0  # the stored row holds each aggregation under the spec's name


def test_answered_requests_move_awkwardly_named_aggregations_forward(named_home):
    home, _ = named_home
    before = json.loads(ok(home, "features", "show", "odd", "9"))[COUNT]
    with running_server(home) as server:
        for minute in (1, 2):
            answer = server.client.post("/v1/models/odd/predict", json=_record(9, f"2026-03-13T10:0{minute}:00Z"))
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 20
        while (shown := json.loads(ok(home, "features", "show", "odd", "9")))[COUNT] < before + 2:
            assert time.monotonic() < deadline, f"the live updates never reached the online row: {shown}"
            time.sleep(0.1)
    assert sorted(shown) == sorted([KEY, COUNT, MEAN])  # set under its own name, never a stray key beside it


def test_an_aggregation_name_with_a_double_quote_is_refused_in_one_line(named_home, tmp_path):
    _, spec = named_home
    quoted = spec.with_name("quoted.toml")
    quoted.write_text(
        spec.read_text().replace('name = "odd"', 'name = "quoted"', 1).replace(json.dumps(MEAN), "'mean \"7d\"'")
    )
    code, out, err = cli(tmp_path / "h", "init", "--spec", str(quoted))
    assert code != 0 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "aggregation 'mean \"7d\"'" in err and "rename it" in err

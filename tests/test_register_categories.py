"""Which code each category value gets when a model trained elsewhere is registered: the user's
--categories (checked against the values the contract allows), else the contract's allowed_values,
else the ingested training days — never the rows it is scored on, which may lack a value."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import lightgbm as lgb
import polars as pl
import pytest

from appliance.cli import main
from appliance.features.encoding import FeatureSchema
from appliance.home import Home
from appliance.spec import load_spec
from appliance.training.registration import register_onnx
from tests.own_data import spec_text
from tests.test_register_onnx import FEATURES, START, VOCABULARY, cli, events, to_onnx

ALLOWED = 'allowed_values = ["red", "green", "blue"]'


@pytest.fixture(scope="module")
def sorted_codes(tmp_path_factory) -> SimpleNamespace:
    """A model encoded the appliance's way (blue 0, green 1, red 2), a later file with no 'blue' row, and
    the churn spec with two contracts: one listing the colours (its data ingested), one that does not."""
    folder = tmp_path_factory.mktemp("codes")
    history, later = events(1600, 0, 12, seed=4), events(300, 12, 2, seed=5)
    contract = spec_text("churn_events", "contract.toml")
    assert ALLOWED in contract
    for name, text in (("listed", contract), ("open", contract.replace(ALLOWED, ""))):
        (folder / name).mkdir()
        history.write_parquet(folder / name / "history.parquet")
        (folder / name / "contract.toml").write_text(text)
        (folder / name / "churn.toml").write_text(spec_text("churn_events", "spec.toml"))
    spec = load_spec(folder / "listed" / "churn.toml")
    train = history.filter(pl.col("at") < START + timedelta(days=8))
    schema = FeatureSchema.learn(spec.model_features, train)
    assert schema.columns[2].categories == sorted(VOCABULARY)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": 3, "num_threads": 1, "deterministic": True},
        lgb.Dataset(schema.encode_frame(train), train["churned"].to_numpy(), feature_name=FEATURES),
        num_boost_round=30,
    )
    (folder / "model.onnx").write_bytes(to_onnx(booster, 4))
    no_blue = folder / "no_blue.parquet"
    later.filter(pl.col("color") != "blue").write_parquet(no_blue)
    home = folder / "listed" / "home"
    assert main(["--home", str(home), "init", "--spec", str(folder / "listed" / "churn.toml")]) == 0
    assert main(["--home", str(home), "ingest", "churn", str(folder / "listed" / "history.parquet")]) == 0
    return SimpleNamespace(folder=folder, model=folder / "model.onnx", no_blue=no_blue, home=home)


@pytest.fixture
def home(sorted_codes, tmp_path) -> Path:
    shutil.copytree(sorted_codes.home, tmp_path / "home")
    return tmp_path / "home"


def _vocabulary(home: Path, version: int) -> list[str]:
    with Home(home) as h:
        return h.registry.version("churn", version).feature_schema["columns"][2]["categories"]


def test_eval_rows_lacking_a_value_do_not_shift_the_codes(sorted_codes, home):
    # Learnt from these rows, green would be 0 and red 1: every request scored with its neighbour's code.
    registration = register_onnx(home, "churn", sorted_codes.model, eval_data=sorted_codes.no_blue)
    assert _vocabulary(home, registration.version.version) == ["blue", "green", "red"]
    assert registration.categories_from == "from the data contract's allowed_values (sorted; code = position)"
    assert registration.gates.passed, registration.gates


def test_without_contract_values_the_ingested_days_give_the_codes_and_without_them_it_refuses(
    sorted_codes, tmp_path, capsys
):
    spec = sorted_codes.folder / "open" / "churn.toml"
    home = tmp_path / "home"
    assert cli(home, capsys, "init", "--spec", spec).code == 0
    refused = cli(home, capsys, "register", "churn", "--onnx", sorted_codes.model, "--eval", sorted_codes.no_blue)
    assert refused.code == 1 and refused.out == ""
    assert refused.err.startswith("error: no category codes for ['color']: the data contract lists no allowed_values")
    assert "pass --categories FILE.json" in refused.err and refused.err.count("\n") == 1
    with Home(home) as h:
        assert h.registry.versions("churn") == []

    assert main(["--home", str(home), "ingest", "churn", str(spec.parent / "history.parquet")]) == 0
    registration = register_onnx(home, "churn", sorted_codes.model, eval_data=sorted_codes.no_blue)
    assert _vocabulary(home, registration.version.version) == ["blue", "green", "red"]
    assert registration.categories_from.startswith("learnt from the ingested training days")


def test_categories_must_code_every_value_the_contract_allows_and_extra_ones_are_said(
    sorted_codes, home, tmp_path, capsys
):
    lacking = tmp_path / "lacking.json"
    lacking.write_text(json.dumps({"color": ["red", "green"]}))
    refused = cli(home, capsys, "register", "churn", "--onnx", sorted_codes.model, "--categories", lacking)
    assert refused.code == 1 and refused.out == ""
    assert refused.err.startswith(
        "error: categories lacking.json: 'color' has no code for ['blue'], which the data contract allows"
    )
    assert refused.err.count("\n") == 1

    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"color": ["blue", "green", "red", "purple"]}))
    result = cli(home, capsys, "register", "churn", "--onnx", sorted_codes.model, "--categories", extra)
    assert result.code == 0, result.err
    said = [line for line in result.out.splitlines() if "purple" in line]
    assert said == [
        "categories extra.json: 'color' codes ['purple'], which the data contract does not allow "
        "(ingest quarantines rows with them); kept as given"
    ]
    assert _vocabulary(home, 1) == ["blue", "green", "red", "purple"]

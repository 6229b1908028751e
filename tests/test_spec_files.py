"""The test data sets' specs and contracts are files, as a user keeps them (``tests/specs/DATA_SET/``): each is
plain TOML as it stands, its placeholders inside strings, and each, filled in, is one the appliance's own
loaders accept."""

from __future__ import annotations

import tomllib
from pathlib import Path
from string import Template

import pytest

from appliance.data.contract import load_contract
from appliance.spec import load_spec
from tests.own_data import SPECS, spec_text

FILES = sorted(SPECS.rglob("*.toml"))
# What each placeholder the files use is filled with here: a value of the kind the tests fill in.
SAMPLES = {
    "name": "sample",
    "trainer": "lightgbm",
    "source": "history.parquet",
    "key_type": "integer",
    "id_type": "string",
}


def test_every_data_set_keeps_its_contract_beside_its_spec():
    folders = {path.parent for path in FILES}
    assert {f.name for f in folders} >= {"subscriptions", "loans", "deliveries", "tickets", "garden", "parcels"}
    for folder in folders:
        assert (folder / "contract.toml").is_file(), folder
        if (folder / "spec.toml").is_file():
            assert tomllib.loads((folder / "spec.toml").read_text())["data"]["contract"] == "contract.toml"


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(SPECS)))
def test_each_file_is_toml_as_it_stands_and_loads_once_filled_in(path: Path, tmp_path: Path):
    text = path.read_text()
    tomllib.loads(text)  # placeholders and all
    placeholders = Template(text).get_identifiers()
    assert set(placeholders) <= set(SAMPLES), f"{path}: give {set(placeholders) - set(SAMPLES)} a sample value"
    filled = tmp_path / path.name
    filled.write_text(spec_text(path.parent.name, path.name, **{p: SAMPLES[p] for p in placeholders}))
    if path.name == "spec.toml":
        assert load_spec(filled).data.contract == "contract.toml"
    else:
        assert load_contract(filled).fields

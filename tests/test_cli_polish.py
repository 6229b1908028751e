"""Small things a new user meets: a closed pipe ends the CLI quietly, hints name the model at hand, a backup
says its schema versions plainly, a missing backup folder is called missing, an abort says what it did, a
typo in a TOML enum lists the valid values, and a number JSON cannot hold gets a plain 422."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from appliance.cli.serving import _serving_lines
from appliance.errors import InvalidInput
from appliance.spec import load_spec
from appliance.toml_file import load_toml
from tests.conftest import SAMPLE_RECORD, cli, ok, small_spec

ROOT = Path(__file__).resolve().parents[1]


def test_a_reader_that_went_away_ends_the_command_quietly_with_141(home_dir):
    read, write = os.pipe()
    os.close(read)  # `| head -1` already gone: every write the command makes meets a closed pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "appliance", "--home", str(home_dir), "models", "fraud"],
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_hints_name_the_model_at_hand(home_dir):
    code, _, err = cli(home_dir, "predict", "fraud", "--json", "{amount: 1}")
    first = next(iter(SAMPLE_RECORD))  # the model's own first field, as its data has it
    assert code == 1 and f'pass e.g. --json \'{{"{first}": ' in err and "...}'" in err
    assert "run `appliance jobs run monitor fraud`" in ok(home_dir, "monitor", "fraud", "--check", "serving")


def test_backup_names_schema_versions_and_restore_names_a_missing_folder(home_dir, tmp_path):
    said = ok(home_dir, "backup", str(tmp_path / "bk"))
    assert "schema versions metadata.db " in said and "{" not in said
    code, _, err = cli(tmp_path / "new", "restore", str(tmp_path / "nosuch"))
    assert (code, err) == (
        1,
        f"error: {tmp_path / 'nosuch'} does not exist; pass the folder `appliance backup` wrote\n",
    )


def test_an_abort_says_what_it_did(home_dir):
    ok(home_dir, "deploy", "fraud", "start", "canary", "--version", "2")
    assert ok(home_dir, "deploy", "fraud", "abort").endswith("— aborted: all traffic back to v1\n")


class _Shelf(msgspec.Struct, forbid_unknown_fields=True):
    colour: Literal["teal", "amber", "slate"]


class _Store(msgspec.Struct, forbid_unknown_fields=True):
    shelves: dict[str, list[_Shelf]]
    label: str | None = None


def test_a_typo_in_a_toml_enum_lists_the_valid_values(tmp_path):
    path = tmp_path / "store.toml"
    path.write_text('[[shelves.north]]\ncolour = "teal"\n[[shelves.north]]\ncolour = "ambr"\n')
    with pytest.raises(InvalidInput) as refused:
        load_toml(path, _Store, "store file", "a store file")
    assert str(refused.value) == (
        f'store file {path}: shelves[...][1].colour: "ambr" is not one of amber, slate, teal '
        '(did you mean "amber"?); fix the file and try again'
    )
    spec = small_spec(tmp_path, **{'type = "category"': 'type = "categroy"'})
    with pytest.raises(InvalidInput, match=r'"categroy" is not one of .*category.* \(did you mean "category"\?\)'):
        load_spec(spec)


def test_a_number_past_a_64_bit_float_is_a_plain_422(server):
    answer = server.client.post(
        "/v1/models/fraud/predict",
        content=b'{"amount": 1e999}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert "a number too large for a 64-bit float" in answer.json()["detail"]


def test_the_printed_request_pastes_into_a_shell_whatever_the_names_hold():
    record = {"it's": "o'clock", 'grp"q': 1.5, "a b": None}
    *_, curl = _serving_lines("http://127.0.0.1:8000", ("m", record), 1)
    words = shlex.split(curl)  # as a shell reads the line
    assert json.loads(words[words.index("-d") + 1]) == record

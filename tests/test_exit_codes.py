"""The exit statuses scripts rely on (appliance/cli/exit_codes.py), and a data directory that does not exist
refused by every command but those that make one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli.exit_codes import ERROR, EXIT_CODES, UNAVAILABLE, USAGE
from appliance.cli_reference import reference
from tests.conftest import cli, ok

ROOT = Path(__file__).resolve().parent.parent


def missing_home_line(home: Path) -> str:
    return f"error: no data directory at {home}; create one with `appliance init` (or check --home / $APPLIANCE_HOME)"


# A command of each group that reads or changes a data directory, with arguments it would run with.
ON_A_DATA_DIRECTORY = [
    ("models",),
    ("models", "fraud", "--json"),
    ("promote", "fraud", "1"),
    ("ingest", "fraud", "rows.csv"),
    ("data", "list", "fraud"),
    ("features", "materialize", "fraud"),
    ("train", "fraud"),
    ("runs", "list"),
    ("predict", "fraud", "--json", "{}"),
    ("replay", "fraud"),
    ("deploy", "fraud", "status"),
    ("keys", "create", "--scope", "predict"),
    ("monitor", "fraud"),
    ("alerts",),
    ("jobs", "run", "monitor"),
    ("backup", "dest"),
    ("retention",),
    ("tui",),
]


@pytest.mark.parametrize("words", ON_A_DATA_DIRECTORY, ids=" ".join)
def test_a_data_directory_that_does_not_exist_is_refused_and_not_created(tmp_path, words):
    typo = tmp_path / "typo"
    code, out, err = cli(typo, *words)
    assert (code, err) == (ERROR, missing_home_line(typo) + "\n"), out
    assert list(tmp_path.iterdir()) == []


def test_an_empty_folder_is_not_a_data_directory_but_init_makes_one(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(empty, "runs", "list") == (ERROR, "", missing_home_line(empty) + "\n")
    assert list(empty.iterdir()) == []
    ok(empty, "init")
    assert "fraud" in ok(empty, "models")


def test_appliance_home_names_the_folder_refused(tmp_path):
    typo = tmp_path / "service-home"
    shown = subprocess.run(
        [sys.executable, "-m", "appliance", "jobs", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "APPLIANCE_HOME": str(typo)},
    )
    assert (shown.returncode, shown.stdout, shown.stderr) == (ERROR, "", missing_home_line(typo) + "\n")
    assert not typo.exists()


def test_usage_mistakes_exit_2():
    for words in (["bogus"], ["models", "--frobnicate"], ["promote", "fraud"], ["monitor", "fraud", "--check", "x"]):
        shown = subprocess.run(
            [sys.executable, "-m", "appliance", *words], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert shown.returncode == USAGE, words
        assert "usage: appliance" in shown.stderr and shown.stdout == ""


def test_up_on_a_port_in_use_says_so_before_bringing_anything_up(tmp_path):
    with socket.socket() as other:  # another appliance, as far as anyone can tell
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code, out, err = cli(tmp_path / "home", "up", "--port", str(port), "--headless")
    assert (code, out) == (UNAVAILABLE, "")
    assert err == f"error: port {port} on 127.0.0.1 is in use (another appliance?); pick another with --port\n"
    assert not (tmp_path / "home").exists()  # refused before the data directory was made


def test_up_on_an_address_it_cannot_listen_on_is_bad_input(tmp_path):
    code, out, err = cli(tmp_path / "home", "up", "--host", "192.0.2.1", "--headless")  # TEST-NET-1: not here
    assert (code, out) == (ERROR, "") and err.startswith("error: cannot listen on 192.0.2.1 port 8000 (")
    assert not (tmp_path / "home").exists()


def test_replay_with_no_api_answering_exits_3(tmp_path):
    ok(tmp_path / "home", "init")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = cli(tmp_path / "home", "replay", "fraud", "--url", f"http://127.0.0.1:{port}")
    assert code == UNAVAILABLE and out == ""
    assert err.startswith(f"error: the API at http://127.0.0.1:{port} did not answer") and err.count("\n") == 1


def test_the_cli_reference_lists_every_exit_status():
    text = reference()
    for code, name, meaning in EXIT_CODES:
        assert f"| {code} | `{name}` | {meaning.split('`')[0]}" in text
    assert [code for code, *_ in EXIT_CODES] == [0, 1, 2, 3, 130, 141]

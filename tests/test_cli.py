"""The command line through subprocesses, as a user runs it."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from appliance.cli import build_parser, main
from tests.conftest import SAMPLE_RECORD, command_paths

ROOT = Path(__file__).resolve().parent.parent


def appliance(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(client: httpx.Client, proc: subprocess.Popen, seconds: float = 60) -> None:
    """Poll /readyz until the server in ``proc`` answers 200."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "server never became ready"
        time.sleep(0.1)


def _run_up(home: Path) -> tuple[str, int]:
    """`appliance up` with no configuration but APPLIANCE_HOME; returns (its output, exit code)."""
    port = _free_port()
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "up", "--port", str(port), "--headless"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving on"):
                break
        assert lines and lines[-1].startswith("serving on"), "".join(lines)
        curl = proc.stdout.readline() + proc.stdout.readline()
        body = json.loads(re.search(r"-d '(.*)'", curl).group(1))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            wait_ready(client, proc)
            answer = client.post("/v1/models/fraud/predict", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    return "".join(lines) + curl + rest, proc.returncode


def test_up_runs_the_whole_loop_on_the_sample_then_reuses_its_state(tmp_path):
    first, code = _run_up(tmp_path / "home")
    assert code == 0, first
    assert "registered model 'fraud'" in first
    assert re.search(r"ingested 136,721 rows: 136,721 accepted, 0 quarantined", first)
    assert "gate min_auc: pass" in first and "gate onnx_parity: pass" in first
    assert "v1 promoted to production" in first
    second, code = _run_up(tmp_path / "home")
    assert code == 0, second
    assert "nothing to retrain" in second and "trained" not in second


def test_train_promote_predict_rollback(home_dir):
    listed = appliance(home_dir, "models")
    assert re.search(r"fraud\s+v1\s+v2\s+2", listed.stdout), listed.stdout
    versions = appliance(home_dir, "models", "fraud").stdout
    assert re.search(r"v1\s+registered\s+production", versions) and re.search(r"v2\s+registered\s+candidate", versions)
    promoted = appliance(home_dir, "promote", "fraud", "2", "--reason", "test")
    assert promoted.returncode == 0 and "production is now v2 (was v1)" in promoted.stdout
    predicted = appliance(home_dir, "predict", "fraud", "--json", json.dumps(SAMPLE_RECORD))
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout)
    assert answer["version"] == 2 and 0 <= answer["probability"] <= 1
    rolled = appliance(home_dir, "rollback", "fraud")
    assert rolled.returncode == 0 and "rolled back from v2 to v1" in rolled.stdout
    trained = appliance(home_dir, "train", "fraud")
    assert trained.returncode == 0, trained.stderr
    assert "registered fraud v3 as candidate" in trained.stdout and "gate onnx_parity: pass" in trained.stdout


def test_init_makes_a_data_directory_from_nothing(tmp_path):
    result = appliance(tmp_path / "new" / "home", "init")
    assert result.returncode == 0, result.stderr
    assert "model 'fraud' registered" in result.stdout
    assert (tmp_path / "new" / "home" / "metadata.db").exists()
    again = appliance(tmp_path / "new" / "home", "init")
    assert "already registered" in again.stdout


def test_user_errors_print_one_line_and_no_traceback(home_dir, tmp_path):
    cases = [
        (("promote", "nope", "1"), "unknown model 'nope'"),
        (("promote", "fraud", "9"), "no version 9"),
        (("train", "nope"), "unknown model 'nope'"),
        (("predict", "fraud", "--json", "{oops"), "not valid JSON"),
        (("predict", "fraud", "--json", json.dumps({**SAMPLE_RECORD, "hour": "three"})), "'hour' must be an integer"),
        (("predict", "fraud", "--json", "[]"), "non-empty list"),
        (("init", "--spec", str(tmp_path / "missing.toml")), "does not exist"),
    ]
    for args, message in cases:
        result = appliance(home_dir, *args)
        assert result.returncode == 1, (args, result.stdout)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)
    no_home = appliance(tmp_path / "fresh", "predict", "fraud", "--json", "{}")
    assert no_home.returncode == 1 and no_home.stderr.startswith(f"error: no data directory at {tmp_path / 'fresh'};")


def test_every_command_and_argument_says_what_it_is():
    """The CLI reference in docs/ is generated from these strings: a blank one is an undocumented command."""
    missing = []
    for path, parser in command_paths(build_parser()):
        if path and not parser.description:
            missing.append(" ".join(path))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [" ".join((*path, a.dest)) for a in action._choices_actions if not a.help]
            elif not action.help:
                missing.append(" ".join((*path, "/".join(action.option_strings) or action.dest)))
    assert missing == []
    assert len(list(command_paths(build_parser()))) > 40  # the walk reached the subcommands


def test_the_entry_points_reach_main_and_help_starts_without_the_ml_stack():
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["appliance"]
    module, _, name = script.partition(":")
    assert getattr(importlib.import_module(module), name) is main
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom appliance.cli import main\ntry: main(['--help'])\n"
            "except SystemExit: pass\n"
            "print([m for m in ('numpy', 'polars', 'duckdb', 'onnxruntime') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert shown.returncode == 0, shown.stderr
    assert "COMMAND" in shown.stdout and shown.stdout.splitlines()[-1] == "[]", shown.stdout
    module_help = subprocess.run(
        [sys.executable, "-m", "appliance", "deploy", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert module_help.returncode == 0 and "start deploying a version next to production" in module_help.stdout

"""Ctrl-C (SIGINT) or SIGTERM sent to `appliance train`, as a shell or systemd sends it: LightGBM stops after the
round in progress, not at the end of its stage; the run records the signal it received; the command says in one
line which run stopped where and how to continue it, and exits 130; a plain `train` after it names that run."""

from __future__ import annotations

import datetime as dt
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from appliance.layout import Layout
from tests.conftest import ok

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 1_000_000  # far more than the test waits for: the stage ends only if the stop works


def _drafted_model(tmp: Path) -> Path:
    """A data directory with a model drafted by `init --from` over generated readings, trained for ROUNDS rounds."""
    r = np.random.default_rng(4)
    rows = 1200
    level = r.normal(20, 4, rows)
    pl.DataFrame(
        {
            "seen": [dt.datetime(2026, 5, 3) + dt.timedelta(minutes=15 * i) for i in range(rows)],
            "site": r.choice(["kiln", "dock", "yard"], rows),
            "level": level,
            "alarm": (level + r.normal(0, 3, rows)) > 24,
        }
    ).write_parquet(tmp / "gauges.parquet")
    home = tmp / "home"
    ok(home, "init", "--from", str(tmp / "gauges.parquet"), "--target", "alarm", "--out", str(tmp / "spec"))
    spec = tmp / "spec" / "gauges.toml"
    text = spec.read_text()
    assert "num_boost_round = 100\n" in text
    spec.write_text(text.replace("num_boost_round = 100\n", f"num_boost_round = {ROUNDS}\n"))
    return home


def _train_until_stage_train(home: Path) -> subprocess.Popen:
    """`appliance train gauges` in its own process group (as a shell runs a job), once LightGBM is fitting."""
    command = [sys.executable, "-m", "appliance", "--home", str(home), "train", "gauges"]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with sqlite3.connect(Layout(home).metadata_db) as conn:
            if conn.execute("SELECT 1 FROM run_stages WHERE stage = 'train' AND status = 'running'").fetchone():
                return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"training never reached its train stage: {proc.communicate()}")


def _stopped_by(home: Path, proc: subprocess.Popen, signum: signal.Signals) -> tuple[str, str]:
    """Send ``signum`` to the command alone; (its stdout, its one stderr line) once it has exited 130."""
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{signum.name} did not stop the training: {proc.communicate()}") from None
    assert proc.returncode == 130, (out, err)
    line = re.fullmatch(
        r"interrupted: run ([0-9a-f]{8}) stopped in stage train; continue it with `appliance train gauges --resume`\n",
        err,
    )
    assert line, err
    with sqlite3.connect(Layout(home).metadata_db) as conn:
        status, error = conn.execute("SELECT status, error FROM runs WHERE id LIKE ? || '%'", (line[1],)).fetchone()
    assert status == "failed"
    stopped = re.search(rf"TrainingStopped: stopped by {signum.name} after iteration (\d+) of {ROUNDS}", error)
    assert stopped and int(stopped[1]) < ROUNDS, error  # between rounds, long before the stage's end
    return out, line[1]


def test_a_signal_stops_training_between_rounds_says_so_and_the_next_train_names_the_run(tmp_path):
    home = _drafted_model(tmp_path)
    _, first = _stopped_by(home, _train_until_stage_train(home), signal.SIGINT)

    out, second = _stopped_by(home, _train_until_stage_train(home), signal.SIGTERM)
    assert out.splitlines()[0] == (
        f"run {first} stopped in stage train and can still be continued with `appliance train gauges --resume`; "
        "this starts a new run"
    )
    assert second != first


def test_a_run_killed_with_its_command_resumes(tmp_path):
    """`kill -9` of the whole job (command and worker, as an OOM kill or a reboot ends them) leaves the run
    'running' with no live process: `train --resume` marks it failed, as the run itself would, and continues it."""
    import os

    home = _drafted_model(tmp_path)
    proc = _train_until_stage_train(home)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with sqlite3.connect(Layout(home).metadata_db) as conn:
        (killed,) = conn.execute("SELECT id FROM runs WHERE status = 'running'").fetchone()
    command = [sys.executable, "-m", "appliance", "--home", str(home), "train", "gauges", "--resume"]
    resumed = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    time.sleep(4)  # refused at once if the dead run still read 'running'
    assert resumed.poll() is None, resumed.communicate()
    resumed.send_signal(signal.SIGINT)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 130, (out, err)
    assert f"run {killed[:8]} had no live worker (killed or crashed): marked failed, resumable" in out
    assert err.startswith(f"interrupted: run {killed[:8]} stopped in stage"), err

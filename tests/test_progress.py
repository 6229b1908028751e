"""Progress of long work: one updating line on a terminal, nothing at all in a pipe; what training, the
feature table, materialization and ingest report; and `replay` with no server to send to."""

from __future__ import annotations

import os
import pty
import re
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from own_data import write_loans, write_subscriptions

from appliance import progress
from appliance.cli import main
from appliance.features.online import materialize_model
from appliance.home import Home
from appliance.spec import load_spec
from appliance.tracking.queries import list_runs
from appliance.training.pipeline import train

# Long work as the domain reports it: quick updates draw nothing, one past SHOW_AFTER_S draws the line, and
# the end leaves the last line with the time taken and a newline. A nested step shows after its outer one.
LONG_WORK = textwrap.dedent(
    """
    import sys, time
    from appliance import progress
    with progress.step("ingest demo", 3, "files") as files:
        files.update(1)
        time.sleep(progress.SHOW_AFTER_S + 0.2)
        with progress.step("epoch", 40) as epochs:
            epochs.update(7, {"loss": 0.3214})
        time.sleep(progress.LINE_EVERY_S + 0.1)
        files.update(3, {"valid auc": 0.81234})
    print("done", file=sys.stderr)
    """
)


def _run_long_work(stderr: int) -> subprocess.CompletedProcess:
    env = os.environ | {"TERM": "xterm", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", LONG_WORK], stderr=stderr, stdout=subprocess.PIPE, env=env, timeout=60)


def test_on_a_terminal_long_work_is_one_line_rewritten_in_place_and_ended_with_a_newline():
    leader, follower = pty.openpty()
    try:
        done = _run_long_work(follower)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other side is closed and everything is read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0
    text = seen.decode()
    assert "\ringest demo 1/3 files › epoch 7/40 · loss 0.3214\x1b[K" in text  # the nested step after its outer
    # the last line: where it ended, how long it took, and the newline (the terminal writes it as \r\n)
    assert re.search(r"\ringest demo 3/3 files · valid auc 0\.8123 · \d+\.\d s\x1b\[K\r\n", text), text
    assert text.endswith("done\r\n")
    assert "\n" not in text.split("\ringest demo 3/3")[0]  # the line before was rewritten, never scrolled


def test_in_a_pipe_long_work_writes_nothing():
    done = _run_long_work(subprocess.PIPE)
    assert done.returncode == 0
    assert done.stderr == b"done\n" and done.stdout == b""


def test_the_pipeline_reports_its_long_steps_and_its_run_keeps_the_last(tmp_path: Path):
    """Integer entity keys (a feature table, a training set, materialized rows) and another volume than the
    sample: each long step reports, the iteration line carries the training loss."""
    spec_path = write_subscriptions(tmp_path / "data", days=10, live_days=1, per_day=120)
    lines: list[str] = []
    with Home(tmp_path / "home") as home, progress.watching(lines.append):
        spec = load_spec(spec_path)
        home.add_model(spec)
        outcome = train(home, spec)
        materialize_model(home, spec)
        runs = list_runs(home.tracking, "subs")
    shown = "\n".join(lines)
    assert "ingest subs" in shown and "training set of subs" in shown
    rounds = spec.training.params["num_boost_round"]
    assert re.search(rf"iteration {rounds}/{rounds} · train binary_logloss \d", shown), shown
    assert re.search(r"materialize subs\S* [\d,]+/[\d,]+ entities", shown), shown
    # the tracked run keeps the last line it was shown: the Runs tab reads it while the run runs
    assert [r.id for r in runs] == [outcome.run_id]
    assert runs[0].progress is not None and runs[0].progress.startswith(f"iteration {rounds}/{rounds}")


def test_watchers_see_nothing_after_their_block():
    lines: list[str] = []
    with progress.watching(lines.append), progress.step("trial", 2) as trials:
        trials.update(1)
    with progress.step("trial", 2) as trials:
        trials.update(2)
    assert lines == ["trial 1/2", "trial 1/2"]  # the update, then the step's end


def test_replay_with_no_server_is_one_error_line_naming_the_url_and_how_to_start_one(tmp_path: Path, capsys):
    spec = write_loans(tmp_path / "data", days=4, live_days=1, per_day=40)
    assert main(["--home", str(tmp_path / "home"), "init", "--spec", str(spec)]) == 0
    capsys.readouterr()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    assert main(["--home", str(tmp_path / "home"), "replay", "loans", "--url", url]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"error: the API at {url} did not answer") and err.count("\n") == 1
    assert "`appliance up --headless` in another terminal" in err


def test_replay_to_something_that_is_not_the_api_says_so(tmp_path: Path, capsys):
    spec = write_loans(tmp_path / "data", days=4, live_days=1, per_day=40)
    assert main(["--home", str(tmp_path / "home"), "init", "--spec", str(spec)]) == 0
    capsys.readouterr()
    with socket.socket() as listener:  # answers every connection with a line that is not HTTP
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        threading.Thread(target=answer, daemon=True).start()
        code = main(["--home", str(tmp_path / "home"), "replay", "loans", "--url", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "as the appliance's API" in err, err
    assert main(["--home", str(tmp_path / "home"), "replay", "loans", "--url", "http://127.0.0.1:port"]) == 1
    assert "has no valid port" in capsys.readouterr().err

"""One `appliance up` per data directory: a second one refuses, naming the first, before it trains or binds;
the other commands work beside it; the lock goes with its holder, however that ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from appliance.cli.exit_codes import UNAVAILABLE
from appliance.cli.up_lock import serving_lock
from tests.conftest import cli, ok

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_second_up_on_one_data_directory_refuses_naming_the_first(home_dir, tmp_path):
    port = _free_port()
    first = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--home", str(home_dir), "up", "--headless", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert first.poll() is None and time.monotonic() < deadline, "the first `up` did not start serving"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        code, out, err = cli(home_dir, "up", "--headless", "--port", str(_free_port()))
        assert (code, out) == (UNAVAILABLE, "")
        assert err == (
            f"error: {home_dir} is already served by PID {first.pid} on http://127.0.0.1:{port}; stop that one "
            "first, or give this one another --home\n"
        )
        assert "fraud" in ok(home_dir, "models")  # the other commands work beside it
        ok(home_dir, "deploy", "fraud", "status")
        # another data directory is served beside it
        with serving_lock(tmp_path / "other", "http://127.0.0.1:1"):
            pass
    finally:
        os.kill(first.pid, signal.SIGKILL)  # no chance to let go: the kernel drops the lock
        first.wait(timeout=30)
    with serving_lock(home_dir, "http://127.0.0.1:2"):
        assert (home_dir / "locks" / "up.lock").read_text() == f"PID {os.getpid()} on http://127.0.0.1:2"

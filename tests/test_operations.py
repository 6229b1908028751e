"""Running as an appliance: JSON logs, the systemd notify protocol and unit, backups, upgrades in place."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from appliance.backup import backup, restore
from appliance.errors import Conflict, InvalidInput
from appliance.home import Home
from appliance.logs import JsonFormatter
from appliance.serving.models import load_production
from appliance.spec import load_spec
from storage.metadata_schema import MIGRATIONS
from tests.conftest import SAMPLE_RECORD, small_spec

ROOT = Path(__file__).resolve().parent.parent


def test_json_log_lines_carry_level_logger_extras_and_exceptions():
    record = logging.LogRecord("appliance.x", logging.ERROR, __file__, 1, "failed %s", ("job",), None)
    record.model = "fraud"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error" and entry["logger"] == "appliance.x"
    assert entry["message"] == "failed job" and entry["model"] == "fraud"
    assert "ValueError: boom" in entry["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_the_unit_file_verifies_and_is_hardened(tmp_path):
    unit = (ROOT / "systemd" / "appliance.service").read_text()
    for setting in (
        "Type=notify",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=appliance",
        "ProtectSystem=strict",
        "ProtectHome=",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "WatchdogSec=",
        "EnvironmentFile=",
        "ExecStart=@PREFIX@/.venv/bin/appliance up --headless",
    ):
        assert setting in unit, setting
    exe = tmp_path / ".venv" / "bin" / "appliance"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    target = tmp_path / "appliance.service"
    target.write_text(unit.replace("@PREFIX@", str(tmp_path)))
    result = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(60)
    return sock


def test_up_headless_speaks_the_notify_protocol_and_stops_cleanly_on_sigterm(home_dir, tmp_path):
    sock = _notify_socket(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "400000",
        "APPLIANCE_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--home", str(home_dir), "up", "--headless", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        pings = 0
        while pings < 2:
            pings += sock.recv(4096).decode() == "WATCHDOG=1"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    sock.settimeout(1)
    assert "STOPPING=1" in sock.recv(4096).decode()
    for line in filter(None, stderr.splitlines()):  # JSON lines only, as journald expects
        assert json.loads(line)["level"]


def test_backup_under_load_restores_to_a_consistent_state(server, tmp_path):
    stop, failures = threading.Event(), []

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client, Home(server.home) as home:
            while not stop.is_set():
                if client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code != 200:
                    failures.append("predict")
                home.registry.promote("fraud", 2, actor="load")
                home.registry.rollback("fraud", actor="load")

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.3)
        manifest = backup(server.home, tmp_path / "backup")
    finally:
        stop.set()
        worker.join()
    assert failures == []
    assert {"metadata.db"} <= set(manifest.schema_versions)
    restored = tmp_path / "restored"
    restore(tmp_path / "backup", restored)
    conn = sqlite3.connect(restored / "metadata.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with Home(restored) as home:
        production = home.registry.alias("fraud", "production")
        live = home.conn.execute(
            "SELECT version FROM promotions WHERE model = 'fraud' AND rolled_back_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
        assert production == live  # alias and promotion history were captured in one state
        for v in home.registry.versions("fraud"):
            assert home.artifacts.get(v.artifact_sha256)  # every referenced artifact, hash-verified
        assert load_production(home, "fraud").predict([SAMPLE_RECORD]).shape == (1,)


def test_a_damaged_backup_or_a_busy_target_restores_nothing(home_dir, tmp_path):
    backup(home_dir, tmp_path / "b")
    with pytest.raises(Conflict, match="not empty"):
        backup(home_dir, tmp_path / "b")
    with pytest.raises(Conflict, match="--force"):
        restore(tmp_path / "b", home_dir)
    artifact = next(p for p in (tmp_path / "b" / "artifacts").rglob("*") if p.is_file())
    artifact.write_bytes(b"not the model")
    with pytest.raises(InvalidInput, match="damaged"):
        restore(tmp_path / "b", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_restore_with_force_keeps_the_old_data_directory_aside(home_dir, tmp_path):
    backup(home_dir, tmp_path / "b")
    (home_dir / "marker").write_text("old")
    restore(tmp_path / "b", home_dir, force=True)
    assert not (home_dir / "marker").exists()
    aside = [p for p in home_dir.parent.iterdir() if p.name.startswith("home.before-restore-")]
    assert len(aside) == 1 and (aside[0] / "marker").read_text() == "old"


def test_a_data_directory_from_version_0_1_upgrades_in_place(tmp_path):
    old = tmp_path / "home"
    shutil.copytree(ROOT / "tests" / "fixtures" / "home-v1", old)
    assert sqlite3.connect(old / "metadata.db").execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (1,)
    with Home(old) as home:
        assert home.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == MIGRATIONS[-1].version
        assert [v.version for v in home.registry.versions("fraud")] == [1]
        assert home.registry.alias("fraud", "production") == 1
        home.add_model(load_spec(small_spec(tmp_path)))  # its spec lived in a temporary folder: point it here
        # 0.1 versions predate the feature store: they keep their own input contract, all raw features.
        old_record = {
            "amount": 950.0,
            "merchant_category": "jewelry",
            "hour": 3,
            "is_foreign": True,
            "account_age_days": 20,
            "country": "US",
        }
        assert load_production(home, "fraud").predict([old_record]).shape == (1,)

"""Backups that finish under load as one instant and hold what a clean host needs; restores that trust
nothing in the backup; a damaged database named, with the way back. Through the CLI and real files."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import cli, log_extent, ok, running_server
from own_data import write_loans, write_subscriptions

from appliance.home import Home
from appliance.training.pipeline import ingest_source
from storage.prediction_log import PredictionStore

ROOT = Path(__file__).resolve().parent.parent
FEATURES = json.dumps({"minutes": 3.5, "channel": 2, "note": "x" * 300})


def _log_rows(first: int, count: int) -> tuple[list[tuple], list[tuple]]:
    """Prediction rows and their shadow rows, request ids counting up from ``first``: a copy taken at
    one instant holds the same ids in both tables, with no gap."""
    ids = [f"{i:010d}" for i in range(first, first + count)]
    now = time.time()
    predictions = [
        (
            rid,
            0,
            "visits",
            3,
            "production",
            7,
            now,
            None,
            str(1000 + int(rid) % 50),
            FEATURES,
            0.25,
            0,
            0.8,
            200,
            None,
            None,
        )
        for rid in ids
    ]
    return predictions, [(rid, 0, 7, 4, 0.5, 1, 0.9, None, None) for rid in ids]


def _logged_home(root: Path, rows: int) -> Path:
    """A data directory whose prediction log holds ``rows`` rows (and as many shadow scores)."""
    Home(root).close()
    store = PredictionStore(root / "predictions.db")
    for first in range(0, rows, 5000):
        store.append(*_log_rows(first, min(5000, rows - first)))
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.conn.close()
    return root


def _one_instant(db: Path) -> int:
    """The rows of a copied log, checking it is one instant of a log written as ``_log_rows`` writes."""
    count, first, last, shadow = log_extent(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert (shadow, first, last) == (count, 0, count - 1), "the copy mixes instants"
    return count


def _one_error_line(code: int, out: str, err: str) -> str:
    assert code == 1 and out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _strays(folder: Path) -> list[str]:
    """What a backup or a restore left beside its destination while building it."""
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".new-" in p.name)


def _write_log(path: str, first: int, limit: int, stop, written) -> None:
    """The prediction log's writer at full speed: one prediction and its shadow score per commit."""
    store = PredictionStore(Path(path))
    try:
        while not stop.is_set() and written.value < limit:
            store.append(*_log_rows(first + written.value, 1))
            written.value += 1
    finally:
        store.conn.close()


def test_a_backup_finishes_while_the_log_is_written_as_fast_as_it_can_and_is_one_instant(tmp_path):
    # More than three of the steps the online backup took before (4,096 pages): each commit restarted those.
    logged = 100_000
    home = _logged_home(tmp_path / "home", logged)
    assert (home / "predictions.db").stat().st_size > 3 * 4096 * 4096
    # The writer, a process of its own as the log's is, stops by itself after this many commits: a backup
    # that restarts on each commit would finish only then, and the test would fail rather than hang.
    limit = 300_000
    spawn = multiprocessing.get_context("spawn")
    stop, written = spawn.Event(), spawn.Value("q", 0)
    writer = spawn.Process(target=_write_log, args=(str(home / "predictions.db"), logged, limit, stop, written))
    writer.start()
    try:
        while written.value < 100:  # writing before the backup starts, and all through it
            assert writer.is_alive()
            time.sleep(0.005)
        code, _, err = cli(home, "backup", str(tmp_path / "backup"))
        at_finish = written.value
    finally:
        stop.set()
        writer.join()
    assert code == 0, err
    assert at_finish < limit, "the backup finished only once the writer stopped"
    copied = _one_instant(tmp_path / "backup" / "predictions.db")
    assert logged + 100 <= copied <= logged + at_finish
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    for f in manifest["files"]:
        data = (tmp_path / "backup" / f["path"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (f["sha256"], f["bytes"])
    assert _strays(tmp_path) == []
    # and what was backed up is what a restore brings back
    ok(tmp_path / "restored", "restore", str(tmp_path / "backup"))
    assert _one_instant(tmp_path / "restored" / "predictions.db") == copied


def test_a_killed_backup_leaves_nothing_that_blocks_the_next(tmp_path):
    home = _logged_home(tmp_path / "home", 20_000)
    big = home / "artifacts" / "ab" / ("ab" + "0" * 62)  # a large model file: the copy takes a while
    big.parent.mkdir(parents=True)
    with big.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    dest = tmp_path / "backups" / "nightly"
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--home", str(home), "backup", str(dest)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while not (dest.parent.exists() and _strays(dest.parent)):
            assert proc.poll() is None, f"the backup ended before it could be killed: {proc.stderr.read()}"
            time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        assert not dest.exists()  # nothing where the backup goes until it is whole
    finally:
        proc.kill()
        proc.wait()
    assert len(_strays(dest.parent)) == 1 and not dest.exists()
    # A second backup to the same place: the dead one's leftovers neither block it nor remain.
    out = ok(home, "backup", str(dest))
    assert "backed up" in out and _strays(dest.parent) == []
    assert (dest / "manifest.json").is_file() and _one_instant(dest / "predictions.db") == 20_000


def _tampered(backup: Path, path: str) -> None:
    """Add to a backup's manifest an entry for ``path`` whose file is there and matches, so only where it
    leads is wrong."""
    outside = (backup / path) if not path.startswith("/") else Path(path)
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(b"written by an attacker")
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["files"].append(
        {
            "path": path,
            "sha256": hashlib.sha256(b"written by an attacker").hexdigest(),
            "bytes": len(b"written by an attacker"),
        }
    )
    (backup / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "path", ["../escaped.txt", "artifacts/../../escaped.txt", "ABSOLUTE", "specs//x.toml", "./appliance.toml"]
)
def test_a_manifest_path_that_leads_out_is_refused_and_nothing_is_written(tmp_path, path):
    home = _logged_home(tmp_path / "home", 10)
    ok(home, "backup", str(tmp_path / "vault" / "b"))
    if path == "ABSOLUTE":
        path = str(tmp_path / "victim" / "escaped.txt")
    _tampered(tmp_path / "vault" / "b", path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    target = tmp_path / "hosts" / "new"
    line = _one_error_line(*cli(target, "restore", str(tmp_path / "vault" / "b")))
    assert "not safe to restore" in line and repr(path) in line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # not a file, not a folder
    # nor over an existing data directory with --force: it stays where it is, untouched
    (home / "marker").write_text("mine")
    _one_error_line(*cli(home, "restore", str(tmp_path / "vault" / "b"), "--force"))
    assert (home / "marker").read_text() == "mine" and _strays(home.parent) == []
    assert not [p for p in home.parent.iterdir() if ".before-restore-" in p.name]


def test_a_backup_file_that_is_a_link_out_of_the_backup_is_refused(tmp_path):
    home = _logged_home(tmp_path / "home", 10)
    (home / "appliance.toml").write_text("[retention]\nhot_days = 9\n")
    ok(home, "backup", str(tmp_path / "b"))
    # the same bytes, so the hash matches: the link is what would read a file outside the backup
    secret = tmp_path / "elsewhere" / "secret"
    secret.parent.mkdir()
    shutil.copy(tmp_path / "b" / "appliance.toml", secret)
    (tmp_path / "b" / "appliance.toml").unlink()
    (tmp_path / "b" / "appliance.toml").symlink_to(secret)
    line = _one_error_line(*cli(tmp_path / "new", "restore", str(tmp_path / "b")))
    assert "'appliance.toml'" in line and not (tmp_path / "new").exists()


def test_a_damaged_file_is_found_before_anything_is_touched(tmp_path):
    home = _logged_home(tmp_path / "home", 10)
    ok(home, "backup", str(tmp_path / "b"))
    with (tmp_path / "b" / "predictions.db").open("r+b") as f:
        f.seek(5000)
        f.write(b"\xff" * 16)
    (home / "marker").write_text("mine")
    line = _one_error_line(*cli(home, "restore", str(tmp_path / "b"), "--force"))
    assert "damaged: predictions.db" in line
    assert (home / "marker").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["b", "home"]


def _moved_spec(data: Path, specs: Path) -> Path:
    """The subscriptions spec moved into a folder of its own: its source and live file named by absolute
    paths (as `init --from` writes them for data elsewhere), its contract and entities by '../' paths."""
    spec = data / "subs.toml"
    specs.mkdir()
    text = spec.read_text()
    for key, value in (
        ("source", data / "history.parquet"),
        ("live", data / "live.parquet"),
        ("contract", "../data/contract.toml"),
        ("entities", "../data/subscribers.parquet"),
    ):
        line = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(line, f"{key} = {json.dumps(str(value))}   # moved")
    moved = specs / "subs.toml"
    moved.write_text(text)
    spec.unlink()
    return moved


def test_a_backup_restored_on_a_clean_host_serves_and_can_retrain(tmp_path):
    host = tmp_path / "host-a"
    spec = _moved_spec(write_subscriptions(host / "data", days=10, live_days=2, per_day=200).parent, host / "specs")
    home = host / "home"
    ok(home, "init", "--spec", str(spec))
    ok(home, "train", "subs")
    ok(home, "promote", "subs", "1")
    ok(home, "features", "materialize", "subs")
    (home / "appliance.toml").write_text("[retention]\nhot_days = 5\n")
    request = {"subscriber": 1007, "logged_at": "2026-03-11T08:00:00Z", "minutes": 30.0, "channel": 4, "on_mobile": 0}
    with running_server(home) as server:
        served = server.client.post("/v1/models/subs/predict", json=request)
        assert served.status_code == 200, served.text
    out = ok(home, "backup", str(tmp_path / "usb" / "backup"))
    assert "specs of 1 model(s)" in out and "note:" not in out
    with running_server(home) as server:  # the answer the first host gives from the state backed up
        served = server.client.post("/v1/models/subs/predict", json=request)  # (each answer moves the entity)

    shutil.rmtree(host)  # the first host is gone: its spec, its data files, its data directory
    restored = tmp_path / "host-b" / "appliance"
    out = ok(restored, "restore", str(tmp_path / "usb" / "backup"))
    assert f"model 'subs' now reads its spec from {restored}/specs/subs/" in out
    assert (restored / "appliance.toml").read_text() == "[retention]\nhot_days = 5\n"
    with Home(restored) as h:
        spec_path = Path(h.registry.model("subs").spec_path)
        assert spec_path.is_relative_to(restored)
        restored_spec = h.spec("subs")
        for value in (
            restored_spec.data.source,
            restored_spec.data.contract,
            restored_spec.data.entities,
            restored_spec.data.live,
        ):
            assert value is not None and restored_spec.resolve(value).is_relative_to(restored)
        # the copied history is what was ingested: a retrain reads it and finds nothing new
        assert ingest_source(h, restored_spec).new_snapshot is False
        moved = [e for e in h.registry.audit_log("subs") if e.action == "spec_moved"]
        assert [(e.actor, e.detail["to"]) for e in moved] == [("restore", str(spec_path))]
    with running_server(restored) as server:
        again = server.client.post("/v1/models/subs/predict", json=request)
    assert again.status_code == 200, again.text
    assert (again.json()["version"], again.json()["probability"]) == (1, served.json()["probability"])
    # and the restored directory backs up whole in turn, its spec now inside it
    out = ok(restored, "backup", str(tmp_path / "usb" / "again"))
    assert "specs of 1 model(s)" in out and "note:" not in out


def test_a_folder_source_named_by_an_absolute_path_comes_along_and_reads_the_same(tmp_path):
    spec = write_loans(tmp_path / "data", days=5, live_days=1, per_day=80)  # CSV, text keys, no entity
    history = tmp_path / "exports" / "applications"
    history.mkdir(parents=True)
    frame = pl.read_csv(spec.parent / "applications.csv")
    for i, part in enumerate(frame.iter_slices(150)):
        part.write_csv(history / f"part-{i}.csv")
    (history / "README").write_text("not data: read_source skips it, and so does the backup")
    spec.write_text(spec.read_text().replace('source = "applications.csv"', f'source = "{history}"'))
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    ok(home, "ingest", "loans", str(history))
    ok(home, "backup", str(tmp_path / "b"))
    shutil.rmtree(tmp_path / "exports")
    shutil.rmtree(tmp_path / "data")
    ok(tmp_path / "restored", "restore", str(tmp_path / "b"))
    with Home(tmp_path / "restored") as h:
        restored = h.spec("loans")
        source = restored.resolve(restored.data.source)
        assert source.is_relative_to(tmp_path / "restored") and source.is_dir()
        assert sorted(p.name for p in source.iterdir()) == ["part-0.csv", "part-1.csv", "part-2.csv"]
        assert ingest_source(h, restored).new_snapshot is False


def test_a_backup_from_before_specs_were_included_still_restores(tmp_path):
    spec = write_loans(tmp_path / "data", days=4, live_days=1, per_day=40)
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    ok(home, "backup", str(tmp_path / "b"))
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    del manifest["specs"], manifest["notes"]  # as earlier versions wrote it
    manifest["files"] = [f for f in manifest["files"] if not f["path"].startswith("specs/")]
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    out = ok(tmp_path / "restored", "restore", str(tmp_path / "b"))
    assert "now reads its spec" not in out and not (tmp_path / "restored" / "specs").exists()
    with Home(tmp_path / "restored") as h:
        assert h.registry.model("loans").spec_path == str(spec)


def test_a_backup_of_a_spec_that_is_gone_says_what_it_lacks(tmp_path):
    spec = write_subscriptions(tmp_path / "data", days=6, live_days=1, per_day=50)
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    (spec.parent / "live.parquet").unlink()
    out = ok(home, "backup", str(tmp_path / "b1"))
    assert "note: model 'subs': data.live" in out and "is missing" in out
    spec.unlink()
    out = ok(home, "backup", str(tmp_path / "b2"))
    assert f"note: model 'subs': its spec {spec} is missing" in out
    out = ok(tmp_path / "restored", "restore", str(tmp_path / "b2"))
    assert "now reads its spec" not in out and "note: model 'subs'" in out


@pytest.mark.parametrize("damage", ["header", "pages", "truncated"])
@pytest.mark.parametrize("database", ["metadata.db", "predictions.db"])
def test_a_damaged_database_is_one_error_line_that_names_it_and_points_to_restore(tmp_path, damage, database):
    home = _logged_home(tmp_path / "home", 3000)
    path = home / database
    with path.open("r+b") as f:
        if damage == "header":
            f.write(b"\0" * 100)
        elif damage == "pages":
            f.seek(4096)
            f.write(os.urandom(4096 * 4))
        else:
            f.truncate(path.stat().st_size // 3)
    # a command that opens it, and a backup, which would otherwise carry the damage
    command = ("models",) if database == "metadata.db" else ("retention",)
    for args in (command, ("backup", str(tmp_path / "b"))):
        line = _one_error_line(*cli(home, *args))
        assert str(path) in line and "damaged" in line and "appliance restore" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]

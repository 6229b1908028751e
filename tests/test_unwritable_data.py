"""A data directory the appliance cannot write to (a read-only file, a read-only mount, a full disk) is one
`error:` line that says what to do, never a traceback; the database is left as it was."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

from storage.database import unwritable
from tests.conftest import cli


@contextlib.contextmanager
def unwritable_file(path: Path) -> Iterator[None]:
    """``path`` read-only for this user: immutable for root (whom file modes do not stop), else mode 0444."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)


def test_a_write_the_data_directory_cannot_take_is_one_error_line(home_dir: Path):
    metadata = home_dir / "metadata.db"
    before = metadata.read_bytes()
    with unwritable_file(metadata):
        code, out, err = cli(home_dir, "keys", "create", "--scope", "predict")
    assert code == 1 and out == "", out
    assert err.startswith("error: a database of the data directory cannot be written (attempt to write a readonly")
    assert "writable by the user running the appliance" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert metadata.read_bytes() == before
    assert cli(home_dir, "keys", "create", "--scope", "predict")[0] == 0  # writable again: it works


def test_only_writes_the_file_cannot_take_are_said_so(tmp_path: Path):
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            read_only.execute("INSERT INTO t VALUES (1)")
        except sqlite3.DatabaseError as e:
            refused = unwritable(e, "metadata.db")
        assert refused is not None and str(refused).startswith("metadata.db cannot be written")
        try:
            read_only.execute("SELECT * FROM no_such_table")
        except sqlite3.DatabaseError as e:  # a bad statement is a bug, not the disk's: not said as one
            assert unwritable(e) is None
    finally:
        read_only.close()

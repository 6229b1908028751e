"""Where a report or a backup cannot be written, one `error:` line says why: a folder that cannot be written
in, or a file where a folder should be."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli, ok
from tests.own_data import write_loans


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """loans registered, nothing trained: enough to report on and to back up."""
    ok(tmp_path / "home", "init", "--spec", str(write_loans(tmp_path / "data", days=2, live_days=1, per_day=20)))
    (tmp_path / "notes.txt").write_text("not a folder\n")
    return tmp_path / "home"


def refused(home: Path, *args: str) -> str:
    code, out, err = cli(home, *args)
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("error: "), (code, out, err)
    return err


def test_report_to_a_folder_it_cannot_write_in_says_so_in_one_line(home):
    # /proc takes no new files, whoever runs the test (a folder made read-only would not stop root)
    assert "could not be written there (No such file or directory)" in refused(
        home, "report", "loans", "--out", "/proc/loans.html"
    )


def test_report_below_a_file_names_the_file(home):
    notes = home.parent / "notes.txt"
    for out in (notes / "loans.html", notes / "deeper" / "loans.html"):
        assert f"{notes} is a file, not a folder" in refused(home, "report", "loans", "--out", str(out))
    assert "does not exist; create it first" in refused(
        home, "report", "loans", "--out", str(home.parent / "nowhere" / "loans.html")
    )


def test_backup_to_a_file_or_below_one_says_it_is_a_file(home):
    notes = home.parent / "notes.txt"
    assert f"backup destination {notes} is a file" in refused(home, "backup", str(notes))
    assert f"Not a directory: '{notes}'" in refused(home, "backup", str(notes / "backup"))
    assert notes.read_text() == "not a folder\n"

"""Reports to keep and share: `report`, one self-contained HTML file about a model."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from appliance.cli.arguments import Subcommands, open_home
from appliance.errors import InvalidInput


def register(commands: Subcommands) -> None:
    report = commands.add(
        "report",
        _report,
        "one HTML file with a model's monitoring story, alerts, deployments and versions; opens offline",
    )
    report.add_argument("model", help="a registered model")
    report.add_argument("--since", default=None, help="windows starting on or after this date (2026-10-20)")
    report.add_argument("--out", type=Path, default=None, help="the file to write (default: MODEL-report.html here)")


def _report(args: argparse.Namespace) -> int:
    from appliance.report.page import written_report

    out: Path = args.out or Path(f"{args.model}-report.html")
    if out.is_dir():
        raise InvalidInput(f"--out {out} is a directory; name the file to write, like {out / 'report.html'}")
    folder = out.absolute().parent
    if not folder.is_dir():
        # the nearest part of the path that is there: a file where a folder should be, or the folder to create in
        there = next(p for p in (folder, *folder.parents) if p.exists())
        if not there.is_dir():
            raise InvalidInput(f"--out {out}: {there} is a file, not a folder; name a file in a folder")
        raise InvalidInput(f"--out {out}: the folder {folder} does not exist; create it first")
    with open_home(args) as home:
        report = written_report(home, args.model, args.since)
    try:
        _write_whole(out, report.page.encode())
    except OSError as e:
        raise InvalidInput(
            f"--out {out}: the report could not be written there ({e.strerror}); nothing was written — choose "
            "a folder you can write to"
        ) from None
    print(f"wrote {out}: {report.holds}")
    return 0


def _write_whole(target: Path, data: bytes) -> None:
    """Write through a temporary file beside the target, renamed over it once on disk: a reader, or a failure
    halfway, finds the previous file or the whole new one, never part of one."""
    fd, tmp = tempfile.mkstemp(dir=target.absolute().parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the report from whoever it is shared with
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

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
    if not out.absolute().parent.is_dir():
        raise InvalidInput(f"--out {out}: the folder {out.absolute().parent} does not exist; create it first")
    with open_home(args) as home:
        report = written_report(home, args.model, args.since)
    _write_whole(out, report.page.encode())
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

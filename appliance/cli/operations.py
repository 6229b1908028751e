"""Running the appliance over time: `backup`, `restore`, `retention`, `tui`."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.cli.arguments import Subcommands, home_root
from appliance.cli.output import table, when


def register(commands: Subcommands) -> None:
    backup = commands.add(
        "backup",
        _backup,
        "copy the whole data directory, its settings and each model's spec "
        "and data files to DEST, consistently while serving",
    )
    backup.add_argument("dest", type=Path, help="a new or empty folder outside the data directory")

    restore = commands.add(
        "restore", _restore, "make a backup the data directory (every path and file checked against its manifest first)"
    )
    restore.add_argument("src", type=Path, help="a folder written by `appliance backup`")
    restore.add_argument(
        "--force", action="store_true", help="restore over a non-empty data directory (it is kept aside, not deleted)"
    )

    commands.add(
        "retention",
        _retention,
        "apply the retention policy of <home>/appliance.toml to the prediction log now, and show disk use per part",
    )

    tui = commands.add(
        "tui", _tui, "the dashboard over the data directory (beside a running `appliance up --headless`)"
    )
    tui.add_argument(
        "--cost",
        type=Path,
        default=None,
        help="a TOML file with a [cost] section (default: the data directory's appliance.toml, if any)",
    )


def _backup(args: argparse.Namespace) -> int:
    from appliance.backup import backup

    manifest = backup(home_root(args), args.dest)
    size = sum(f.bytes for f in manifest.files)
    print(
        f"backed up {manifest.source} to {args.dest.resolve()}: {len(manifest.files)} files, "
        f"{size / 1e6:.1f} MB, schema versions "
        + ", ".join(f"{db} {version}" for db, version in sorted(manifest.schema_versions.items()))
        + f", specs of {len(manifest.specs)} model(s)"
    )
    for note in manifest.notes:
        print(f"note: {note}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from appliance.backup import restore

    home = home_root(args, must_exist=False)  # a restore makes the data directory
    manifest = restore(args.src, home, force=args.force)
    print(
        f"restored {len(manifest.files)} files from {args.src.resolve()} (taken "
        f"{when(manifest.created_at)}) into {home.resolve()}"
    )
    for model, spec in manifest.specs.items():
        print(f"model '{model}' now reads its spec from {home.resolve() / spec}")
    for note in manifest.notes:
        print(f"note: {note}")
    return 0


def _retention(args: argparse.Namespace) -> int:
    from appliance.machine.disk import disk_use
    from appliance.retention import apply_retention
    from appliance.settings import load_settings

    home = home_root(args)
    policy = load_settings(home).retention
    report = apply_retention(home, policy)
    print(
        f"policy: {policy.hot_days} days hot in predictions.db, then {policy.archive_days} days as daily "
        "Parquet under archive/predictions/, then deleted"
    )
    print(
        f"archived {report.archived_rows:,} rows from {len(report.archived_days)} day(s)"
        + (f" ({report.archived_days[0]} … {report.archived_days[-1]})" if report.archived_days else "")
        + f"; deleted {len(report.deleted_days)} archived day(s)"
    )
    use = disk_use(home)
    table(
        ("PART", "SIZE"),
        [(p.name, f"{p.bytes / 1e6:,.1f} MB") for p in use.parts] + [("total", f"{use.total_bytes / 1e6:,.1f} MB")],
    )
    return 0


def _tui(args: argparse.Namespace) -> int:
    root = home_root(args)  # refused before the dashboard starts
    from tui.app import run_dashboard
    from tui.data_dir import find_cost

    run_dashboard(root, find_cost(root, args.cost))
    return 0

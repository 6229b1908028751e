"""The whole command line as one argparse parser: global options, then each command group's commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import appliance
from appliance.cli import data, export, models, monitoring, operations, reports, serving, training
from appliance.cli.arguments import Subcommands

DESCRIPTION = "The command line: `appliance up`, `train`, `models`, `promote`, `rollback`, `predict`, …"

# (title, module) in the order `appliance --help` lists them, the order a new model goes through:
# register it, feed it data, train it, serve it, watch it, keep it running. Each module's
# `register(commands)` adds its commands; the CLI reference in docs/ is generated from these groups.
GROUPS = (
    ("Models and the registry", models),
    ("Data and features", data),
    ("Training", training),
    ("Serving", serving),
    ("Monitoring", monitoring),
    ("Reports", reports),
    ("Operations", operations),
    ("Leaving the box", export),
)


def build_parser() -> argparse.ArgumentParser:
    """The `appliance` parser; every command sets ``run``, the handler `main` calls with the parsed arguments."""
    parser = argparse.ArgumentParser(prog="appliance", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"appliance {appliance.__version__}")
    parser.add_argument(
        "--home", type=Path, default=None, help="data directory (default: $APPLIANCE_HOME or ~/.local/share/appliance)"
    )
    commands = Subcommands(parser, "COMMAND")
    for _, group in GROUPS:
        group.register(commands)
    return parser

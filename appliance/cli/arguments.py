"""What the command groups share on the way in: adding subcommands, and turning parsed arguments into
the data directory and times a handler works with."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from appliance.config import default_home
from appliance.errors import InvalidInput, NotFound
from appliance.layout import Layout

# What runs a command: it gets the parsed arguments and returns the exit status (None counts as 0).
Handler = Callable[[argparse.Namespace], int | None]


class Subcommands:
    """One level of subcommands: COMMAND under `appliance`, ACTION under a command like `data`.

    A subcommand's one-line help is also the description its own --help starts with, so no
    command's help says less than the list it appears in."""

    def __init__(self, parser: argparse.ArgumentParser, metavar: str, required: bool = True) -> None:
        self._choices = parser.add_subparsers(required=required, metavar=metavar)

    def add(self, name: str, run: Handler | None, help: str, model: str | None = None) -> argparse.ArgumentParser:
        """A subcommand that calls ``run``; with None, its own ACTIONs name the handlers, and the command
        alone (where an ACTION is optional) prints its help. A command on one model takes it first: ``model``
        is that MODEL argument's help ("a registered model", or what else the model must have)."""
        sub = self._choices.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run or _help_of(sub))
        if model is not None:
            sub.add_argument("model", help=model)
        return sub


def _help_of(parser: argparse.ArgumentParser) -> Handler:
    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show_help


def add_json(parser: argparse.ArgumentParser, holds: str) -> None:
    """``--json`` on a command that reads: one JSON document on stdout in place of its text (``holds`` says
    what the document holds, in the command's help)."""
    parser.add_argument("--json", action="store_true", help=f"print one JSON document instead: {holds}")


def home_root(args: argparse.Namespace, must_exist: bool = True) -> Path:
    """The data directory of ``--home``, else $APPLIANCE_HOME, else the default. Only the commands that make
    one (`init`, `up`, `restore`) take a folder that is not a data directory yet: for any other, a mistyped
    --home is refused rather than met with a new, empty data directory."""
    root = Path(args.home or default_home()).expanduser()
    if must_exist and not Layout(root).exists():
        raise NotFound(
            f"no data directory at {root}; create one with `appliance init` (or check --home / $APPLIANCE_HOME)"
        )
    return root


def open_home(args: argparse.Namespace, must_exist: bool = True):
    """The data directory (``home_root``), opened; use it as a context."""
    from appliance.home import Home  # opening databases is work --help should not pay for

    return Home(home_root(args, must_exist))


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time from an option; one without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not an ISO 8601 time like 2026-10-16T09:30:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

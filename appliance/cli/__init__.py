"""The command line: `appliance up`, `train`, `models`, `promote`, `rollback`, `predict`, …

One module per command group (models, data, training, serving, monitoring, operations), each adding
its commands with ``register`` and holding their handlers; `parser` puts them together. Handlers
import what they work with inside themselves, so `appliance --help` starts without the ML stack.
"""

from __future__ import annotations

import os
import sqlite3
import sys

from appliance.cli.exit_codes import BROKEN_PIPE, ERROR, INTERRUPTED, OK, exit_code
from appliance.cli.output import say as _say
from appliance.cli.parser import build_parser
from appliance.cli.serving import _example_request
from appliance.errors import ApplianceError
from appliance.logs import configure_logging
from storage.database import explained
from storage.errors import StorageError

# `main` is the console script (pyproject: appliance = "appliance.cli:main") and `python -m appliance`;
# tests and scripts/bench import `_example_request` and `_say` from here, as from the one-file CLI.
__all__ = ["_example_request", "_say", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``appliance`` command; an error prints one line and exits with its status
    (appliance/cli/exit_codes.py)."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        status = args.run(args) or OK
        sys.stdout.flush()  # here, not at exit: a reader gone by then is the BrokenPipeError below
        return status
    except BrokenPipeError:
        # The reader closed the pipe (`appliance models | head -1`): it has what it wanted. Point stdout at
        # /dev/null so the interpreter's last flush cannot fail again, and end quietly as a command killed by
        # SIGPIPE would, which is what a shell's pipefail and scripts expect of one (exit_codes.BROKEN_PIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except (ApplianceError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    except sqlite3.DatabaseError as e:
        refused = explained(e)  # damage a later query found (opening the file found none), or an unwritable file
        if refused is None:
            raise
        print(f"error: {refused}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        return INTERRUPTED

"""The exit statuses of the `appliance` command, named in one place: `main` returns them, scripts test them, and
the CLI reference in docs/ prints this table."""

from __future__ import annotations

from appliance.errors import Unavailable

OK = 0
ERROR = 1
USAGE = 2  # argparse's own status for a command line it cannot parse
UNAVAILABLE = 3
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command whose reader went away (`| head -1`)

# (status, its name, what it means) as the CLI reference's table shows them
EXIT_CODES = (
    (OK, "OK", "it did what was asked"),
    (
        ERROR,
        "ERROR",
        "one `error:` line on stderr: bad input, an unknown model or version, a conflict, a damaged database; "
        "also a check that found a problem (`train`/`register`: the gates rejected the version; "
        "`features skew`: mismatches; `jobs run`: a job failed)",
    ),
    (USAGE, "USAGE", "the command line itself is wrong (an unknown command or option, a missing argument)"),
    (
        UNAVAILABLE,
        "UNAVAILABLE",
        "the other side is unavailable: `up`'s port is in use, `replay`'s API does not answer; "
        "the same command may work later or elsewhere",
    ),
    (INTERRUPTED, "INTERRUPTED", "stopped by Ctrl-C (SIGINT)"),
    (
        BROKEN_PIPE,
        "BROKEN_PIPE",
        "the reader of its output went away (`appliance models | head -1`): it stops quietly, as a command "
        "killed by SIGPIPE does, so `set -o pipefail` sees what it would of any other",
    ),
)


def exit_code(error: Exception) -> int:
    """The status an error printed as an `error:` line exits with."""
    return UNAVAILABLE if isinstance(error, Unavailable) else ERROR

"""What the command groups share on the way out: progress lines, aligned tables and times, for a person
reading a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def say(line: str) -> None:
    """A progress line, flushed at once: long commands report through it while they work."""
    print(line, flush=True)


def when(ts: float) -> str:
    """A Unix time as UTC to the second, the way every table shows it."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print columns padded to their widest cell, with no trailing spaces."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())

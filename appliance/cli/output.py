"""What the command groups share on the way out: progress lines, aligned tables and times for a person
reading a terminal, and the JSON document a script reads in their place (``--json``)."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from appliance.data.values import iso  # the one spelling of a time as text, the API's too

# The appliance keeps moments as Unix seconds in fields named so; a JSON document gives them as ISO 8601 UTC.
_UNIX_TIME_SUFFIX = "_at"
_UNIX_TIMES = frozenset({"first_seen", "last_seen"})  # an alert's


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


def print_json(value: object) -> None:
    """One JSON document on stdout, on one line: what ``--json`` prints in place of a command's text."""
    import msgspec

    sys.stdout.write(msgspec.json.encode(plain(value)).decode() + "\n")
    sys.stdout.flush()


def plain(value: object, key: str = "") -> Any:
    """``value`` as JSON's own types: records (msgspec Structs, dataclasses) and frames as objects and lists,
    times as ISO 8601 UTC text (Unix seconds too, in a record's field named ``*_at`` or first/last_seen), a float
    that is not a number (NaN, infinity) as null, paths as text. ``key`` is the field the value is in."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        unix_time = key.endswith(_UNIX_TIME_SUFFIX) or key in _UNIX_TIMES
        return iso(datetime.fromtimestamp(value, UTC)) if unix_time else value
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}  # a mapping's keys are data, not field names
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, key) for v in value]
    fields = getattr(value, "__struct_fields__", None)  # a msgspec Struct
    if fields is not None:
        return {name: plain(getattr(value, name), name) for name in fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "to_dicts"):  # a polars frame: its rows
        return [plain(row) for row in value.to_dicts()]
    if hasattr(value, "item"):  # a numpy scalar
        return plain(value.item(), key)
    raise TypeError(f"{type(value).__name__} has no JSON form here")

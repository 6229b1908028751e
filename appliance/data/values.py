"""Values one at a time, to the types the data contract and the spec declare.

Every door that takes single values — a request's entity key and event time, a feature in a request,
a logged record read back for feedback, a row of a file replayed or shown as an example — converts
them here; whole frames convert in ``contract.cast_columns``. The rules:

- an entity key is an integer or a string, as the contract declares; it is kept and compared as its
  canonical text (an integer's decimal digits), so ``42`` and ``"42"`` name one integer-keyed entity (and
  ``42.0``, but no float at or beyond 2**53, which may be another key rounded);
- an event time is ISO 8601 text, text in the format its contract field declares (``"%s"``: Unix seconds
  written as digits), or a Unix timestamp in seconds (a JSON number);
- a category may arrive as a string (one the model never saw: at most ``MAX_CATEGORY_CHARS``, checked by
  ``features.encoding``) or an integer code; a boolean as true/false or 0/1 (a file's text may also spell
  it yes/no or y/n, any case: ``BOOLEAN_TEXT``).

Anything else is ``InvalidInput`` naming the field, the type it got and the type it needs. This
module imports nothing heavy: the prediction log's writer process reads event times too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Literal

from appliance.errors import InvalidInput

KeyType = Literal["string", "integer"]
MAX_ENTITY_CHARS = 256  # an entity key is an id; a longer one is a mistake, and would be stored with every event
# A category a request sends is a label, a word or a code: 1,024 characters is far past any real one, and the
# prediction log keeps every request's value as sent, so a longer one would grow it by that much per request.
MAX_CATEGORY_CHARS = 1_024
# A JSON number is a double: an integer key sent as one is exact only below 2**53; at or beyond it, another
# key may have been rounded to it (2**53 + 1 reads as 2**53), so the key cannot be told.
EXACT_FLOAT_KEY = 2**53
# Event times accepted, as text or Unix seconds: 1970 up to 2200 (a later number is a typo of milliseconds;
# a time outside the range is no event of this data, and would stretch every monitoring window series).
MAX_TIMESTAMP_S = 7_258_118_400
_INTEGER = re.compile(r"\s*-?[0-9]+\s*")
# The strftime directives a declared time format may use: those Python (requests) and polars (files) read
# alike. A zone is not among them: text in a declared format is taken as UTC, as ISO text without an offset is.
TIME_DIRECTIVES = "%Y %y %m %d %b %B %H %I %p %M %S"
# A format of its own: Unix seconds (strftime's and chrono's directive for seconds since the epoch), a file's
# numbers or text of digits. Declared, a number is read as seconds; never guessed, as a number alone says
# nothing of seconds, milliseconds or microseconds. It stands alone: no other text goes with it.
UNIX_SECONDS = "%s"
_SECONDS_TEXT = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # an integer key is stored as a 64-bit integer

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The text a boolean field reads from, stripped and lower-cased: a file's column (the contract's cast) and a
# logged value read back. A request sends a JSON true/false or 0/1, as a file's rows replayed are sent.
BOOLEAN_TEXT = {"true": True, "1": True, "yes": True, "y": True, "false": False, "0": False, "no": False, "n": False}
# Pairs of text a draft takes for a boolean column: the column holds one pair's spellings and nothing else.
BOOLEAN_PAIRS = ({"true", "false"}, {"yes", "no"}, {"y", "n"})
_TYPE_NAMES = {
    bool: "a boolean",
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def type_name(value: object) -> str:
    """How an error names the JSON type of a value it got."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def key_type_of(contract_type: str | None) -> KeyType:
    """The key type of an entity column whose contract type is ``contract_type``."""
    return "integer" if contract_type == "integer" else "string"


def entity_key(value: object, key_type: KeyType, name: str, where: str = "") -> str:
    """An entity key's canonical text; InvalidInput if it is missing or not of the declared type."""
    kind = type(value)
    if kind is str:
        if key_type == "integer":
            if len(value) > 40 or not _INTEGER.fullmatch(value):
                raise InvalidInput(f"{where}entity key '{name}' must be an integer, got the string {value[:40]!r}")
            return _int64_key(int(value), name, where)
        if len(value) > MAX_ENTITY_CHARS:
            raise InvalidInput(
                f"{where}entity key '{name}' is {len(value):,} characters; the limit is {MAX_ENTITY_CHARS}"
            )
        return value
    if kind is int and key_type == "integer":
        return _int64_key(value, name, where)
    if kind is float and key_type == "integer" and value.is_integer():
        if _exact(value):
            return str(int(value))
        raise InvalidInput(
            f"{where}entity key '{name}' was sent as a float ({value:.17g}), which is exact only below 2^53: "
            "it may be another key rounded; send the key as an integer (no decimal point or exponent) or a string"
        )
    needed = "an integer" if key_type == "integer" else "a string"
    if value is None:
        raise InvalidInput(f"{where}missing entity key '{name}' ({needed}): features are looked up by it")
    raise InvalidInput(f"{where}entity key '{name}' must be {needed}, got {type_name(value)}")


def key_text(value: object, key_type: KeyType = "string") -> str:
    """The canonical text of a key a request sent, without judging it (the log and traffic splits):
    as ``entity_key`` gives it for a valid key, and ``str(value)`` for anything else."""
    kind = type(value)
    if kind is str:
        if key_type == "integer" and len(value) <= 40 and _INTEGER.fullmatch(value):
            return str(int(value))
        return value
    if kind is float and value.is_integer() and _exact(value):
        return str(int(value))
    return str(value)


def _exact(value: object) -> bool:
    """Whether a float is within the integers a double holds exactly, where no other key rounds to it."""
    return isinstance(value, float) and -EXACT_FLOAT_KEY < value < EXACT_FLOAT_KEY


def _int64_key(value: int, name: str, where: str) -> str:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidInput(
            f"{where}entity key '{name}' is beyond a 64-bit integer's range, as the data stores its keys"
        )
    return str(value)


def time_format_problem(format: str) -> str | None:
    """Why ``format`` cannot name how a file and a request spell times (None: it can)."""
    if format == UNIX_SECONDS:
        return None
    used = set(re.findall(r"%(.?)", format))
    if "s" in used:
        return f'format {format!r} mixes %s with other text; Unix seconds are format = "%s" alone'
    unknown = sorted(f"%{d}" for d in used if f"%{d}" not in TIME_DIRECTIVES.split() and d != "%")
    if unknown:
        return (
            f"format {format!r} uses {', '.join(unknown)}; a time format uses only {TIME_DIRECTIVES} and other "
            'text, or is "%s" alone (Unix seconds)'
        )
    if not ({"Y", "y"} & used and {"m", "b", "B"} & used and "d" in used):
        return f"format {format!r} needs a year (%Y or %y), a month (%m, %b or %B) and a day (%d)"
    return None


def request_time(value: object, name: str, where: str = "", format: str | None = None) -> float:
    """A request's event time in epoch microseconds: ISO 8601 text, text in the contract field's ``format``,
    or Unix seconds; InvalidInput otherwise."""
    kind = type(value)
    if isinstance(value, str):
        moment = _read_time(value, format)
        if moment is not None:
            micros = _to_micros(moment)
            if 0 <= micros <= MAX_TIMESTAMP_S * 1_000_000:
                return float(micros)
    elif (kind is int or kind is float) and 0 <= value <= MAX_TIMESTAMP_S:
        return float(round(value * 1_000_000))
    declared = f", text in its contract's format {format!r}" if format and format != UNIX_SECONDS else ""
    seconds = "Unix seconds (a number, or its digits as text: the contract's format '%s')"
    raise InvalidInput(
        f"{where}'{name}' must be an ISO 8601 time like '2026-10-16T09:30:00Z'{declared} or "
        f"{seconds if format == UNIX_SECONDS else 'Unix seconds'}, "
        f"between 1970 and 2200; got {type_name(value) if kind is not str else repr(value[:40])}; "
        "or leave it out for now"
    )


def _read_time(text: str, format: str | None) -> datetime | None:
    if format == UNIX_SECONDS and _SECONDS_TEXT.fullmatch(text):
        # before ISO 8601, which reads 8 digits as a date; outside the range the caller refuses it
        seconds = float(text)
        return datetime.fromtimestamp(seconds, UTC) if 0 <= seconds <= MAX_TIMESTAMP_S else None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    if format is not None and format != UNIX_SECONDS:
        try:
            return datetime.strptime(text, format)
        except ValueError:
            pass
    return None


def time_text(value: object) -> object:
    """An event time as the prediction log keeps it: ISO 8601 text (Unix seconds are converted); text or
    anything else as it came (the log keeps what was sent)."""
    if type(value) in (int, float) and 0 <= value <= MAX_TIMESTAMP_S:
        return iso(datetime.fromtimestamp(value, UTC))
    return value if value is None or type(value) is str else str(value)


def iso(moment: datetime) -> str:
    """A time as ISO 8601 text in UTC with a 'Z' (naive times are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_value(value: object) -> object:
    """A value read from a file as it travels in a JSON request: times as ISO 8601 text, the rest as is."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

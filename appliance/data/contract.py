"""Data contracts: what a batch must look like, checked row by row and batch by batch."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import msgspec
import polars as pl

from appliance.data.sources import SEPARATORS
from appliance.data.values import BOOLEAN_TEXT, MAX_TIMESTAMP_S, UNIX_SECONDS, time_format_problem
from appliance.errors import InvalidInput
from appliance.spec import EventHorizon
from appliance.spec.durations import check_duration, parse_duration
from appliance.toml_file import FieldError, load_toml

FieldType = Literal["string", "integer", "float", "boolean", "timestamp"]

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "timestamp": pl.Datetime("us", "UTC"),
}

# Text timestamps: ISO 8601's common forms (a zone offset or 'Z' converts to UTC; text without one is taken
# as UTC). Nothing is guessed: '05/12/2026' is May or December by who wrote it, so any other spelling is
# read only in the format its contract field names (FieldRule.format).
TIMESTAMP_FORMATS = [
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
]
# More than this share of a column failing its type is a broken batch, not a few bad rows.
UNREADABLE_SHARE = 0.5
# A batch below this share of the contract's daily volume is refused outright.
VOLUME_FLOOR_SHARE = 0.5


class FieldRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str  # the column's name
    type: FieldType  # what the column must read as; a value that does not quarantines its row
    nullable: bool = True  # false: a null quarantines its row
    unique: bool = False  # true: a value names one row, in its batch (a repeat is quarantined) and across batches
    on_repeat: Literal[  # a unique value an earlier batch holds with other values: "reject" quarantines the
        "reject",
        "replace",  # new row, naming the value and the snapshot holding it (the default: no version of
    ] = "reject"  # a row is dropped unseen); "replace": the newer batch's row wins wherever rows are read
    min: float | None = None  # a value below it quarantines its row
    max: float | None = None  # a value above it quarantines its row
    allowed_values: list[str | int | float] | None = None  # any other value quarantines its row
    format: (  # a timestamp's text spelled other than ISO 8601, e.g. "%d/%m/%Y %H:%M" (with %Y %y %m %d %b
        str  # %B %H %I %p %M %S, taken as UTC), or "%s": Unix seconds, a file's numbers or text of digits
        | None  # (1970 to 2200; a larger number, likely milliseconds, quarantines its row): read so at ingest,
    ) = (  # replay and in API requests, where ISO 8601 text reads as well; left out: ISO 8601 text only,
        None  # never a guessed spelling (nor a file's numbers, which may be seconds, milliseconds or µs)
    )

    def __post_init__(self) -> None:
        if self.format is not None:
            if self.type != "timestamp":
                raise FieldError("format", f"field '{self.name}' is a {self.type}; only a timestamp has a format")
            problem = time_format_problem(self.format)
            if problem:
                raise FieldError("format", f"field '{self.name}': {problem}")
        if self.on_repeat == "replace" and not self.unique:
            raise FieldError(
                "on_repeat",
                f"\"replace\" needs unique = true on field '{self.name}' (a newer batch "
                "replaces the row a unique value names): set it, or leave on_repeat out",
            )


class ContractInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str  # the contract's name, quoted in errors
    version: str  # e.g. '1.0'; for people, not checked
    event_time: str  # the column freshness and volume are measured on
    description: str = ""  # what a row is, for people
    separator: (  # a CSV file's separator: ",", ";", "\t" (tab) or "|"; left out: the one of them that
        str | None  # splits its header into the most fields and each of the next lines into as many
    ) = None

    def __post_init__(self) -> None:
        if self.separator is not None and self.separator not in SEPARATORS:
            shown = ", ".join(json.dumps(s) for s in SEPARATORS)
            raise FieldError("separator", f"{self.separator!r} is not a separator a CSV file is read with: {shown}")


class Freshness(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_staleness: str  # a newest event older than this at ingest is a warning: '24h', '7d'

    def __post_init__(self) -> None:
        check_duration("max_staleness", self.max_staleness)

    @property
    def limit(self) -> timedelta:
        return parse_duration(self.max_staleness)


class Volume(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_rows_per_day: int  # fewer accepted rows a day warns; far fewer (VOLUME_FLOOR_SHARE) refuses the batch


class DataContract(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    contract: ContractInfo  # the contract's name, version and event-time column
    fields: list[FieldRule]  # the columns a batch must have, one table each; other columns are dropped
    freshness: Freshness | None = None  # how recent the newest event must be; left out: not checked
    volume: Volume | None = None  # the rows a day a batch should bring; left out: not checked

    @property
    def identity(self) -> list[FieldRule]:
        """The unique fields: a value of one names one row across every batch of the model."""
        return [rule for rule in self.fields if rule.unique]


class ContractResult(msgspec.Struct):
    """The outcome of checking one batch: rows read always equal accepted plus quarantined."""

    rows_read: int
    accepted: pl.DataFrame
    quarantined: pl.DataFrame  # the offending rows as read, plus a ``reason`` column
    warnings: list[str]
    accepted_rows: pl.Series  # which rows of the batch as read were accepted (``quarantine_accepted``)


def load_contract(path: Path) -> DataContract:
    """Read a data contract TOML file; a bad one is an error that names the file and the field."""
    return load_toml(
        path,
        DataContract,
        "data contract",
        "a data contract .toml (a spec's [data] contract is relative to the spec)",
        fix="fix the contract and try again",
    )


def check_batch(
    contract: DataContract, frame: pl.DataFrame, as_of: datetime | None = None, horizon: EventHorizon | None = None
) -> ContractResult:
    """Check a batch against the contract; raise for batch-level failures, quarantine bad rows (and, given
    the model's ``horizon``, rows whose event time is later than it allows)."""
    missing = [f.name for f in contract.fields if f.name not in frame.columns]
    if missing:
        raise InvalidInput(
            f"batch is missing column(s) {missing} required by contract "
            f"'{contract.contract.name}'; nothing was written — fix the file and ingest again"
        )
    casts, reasons = [], []
    for rule in contract.fields:
        cast = cast_column(rule, frame.schema[rule.name])
        casts.append(cast.alias(rule.name))
        unreadable = cast.is_null() & pl.col(rule.name).is_not_null()
        share = frame.select(unreadable.mean()).item() if frame.height else 0.0
        if share and share > UNREADABLE_SHARE:
            raise InvalidInput(
                f"column '{rule.name}' has type {frame.schema[rule.name]}, which does not read as "
                f"the contract's {rule.type} ({share:.0%} of rows fail); nothing was written — "
                + _unreadable_fix(rule, frame.schema[rule.name])
            )
        article = "an" if rule.type == "integer" else "a"
        what = " in Unix seconds from 1970 to 2200" if rule.format == UNIX_SECONDS else ""
        reasons.append(pl.when(unreadable).then(pl.lit(f"{rule.name}: not {article} {rule.type}{what}")))
    # with_columns evaluates every expression on the frame as read, so type reasons see raw values.
    typed = frame.with_columns(*casts, _type=pl.concat_str(reasons, separator="; ", ignore_nulls=True))
    value_reasons = [reason for rule in contract.fields for reason in _value_reasons(rule)]
    if horizon is not None:
        value_reasons += _horizon_reasons(contract, horizon, time.time())
    reason = pl.concat_str([pl.col("_type").replace("", None), *value_reasons], separator="; ", ignore_nulls=True)
    flagged = typed.with_columns(_reason=reason.replace("", None))
    bad = flagged["_reason"].is_not_null()
    accepted = flagged.filter(~bad).select([f.name for f in contract.fields])
    quarantined = frame.with_columns(reason=flagged["_reason"]).filter(bad)
    warnings = _batch_warnings(contract, accepted, as_of)
    if horizon is not None:
        warnings += _horizon_warnings(contract, horizon, quarantined)
    return ContractResult(frame.height, accepted, quarantined, warnings, ~bad)


def _unreadable_fix(rule: FieldRule, source: pl.DataType) -> str:
    if rule.type == "timestamp" and source.is_numeric():
        if rule.format == UNIX_SECONDS:
            return (
                'format = "%s" reads Unix seconds from 1970 to 2200; larger numbers are likely milliseconds '
                "(divide them by 1,000) — fix the file"
            )
        return (
            f"if they are Unix seconds, declare format = \"%s\" for '{rule.name}' in the data contract; "
            "else convert the numbers first (a file's times are otherwise datetimes or ISO 8601 text)"
        )
    if rule.type != "timestamp" or source != pl.String:
        return "fix the file's types"
    if rule.format is None:
        return (
            "its text is not ISO 8601: name its spelling with the field's format, e.g. format = "
            '"%d/%m/%Y %H:%M" (day first), in the data contract'
        )
    return f"its text is neither ISO 8601 nor the field's format {rule.format!r}: fix the format or the file"


def quarantine_accepted(result: ContractResult, batch: pl.DataFrame, reasons: pl.Series) -> ContractResult:
    """``result`` with the accepted rows that ``reasons`` gives a reason (one per accepted row, null: none)
    moved to the quarantine as read from ``batch``, for a check that needs more than the batch (a repeated id)."""
    refused = reasons.is_not_null()
    if not refused.any():
        return result
    read = batch.filter(result.accepted_rows).filter(refused).with_columns(reason=reasons.filter(refused))
    accepted_rows = result.accepted_rows.clone()
    accepted_rows.scatter(result.accepted_rows.arg_true().filter(refused), False)
    return ContractResult(
        result.rows_read,
        result.accepted.filter(~refused),
        pl.concat([result.quarantined, read], how="vertical_relaxed"),
        result.warnings,
        accepted_rows,
    )


def cast_columns(contract: DataContract, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with each contract column read as its declared type (a value that does not read
    becomes null; ``check_batch`` is what quarantines such rows). Other columns are left as they are."""
    return frame.with_columns(
        cast_column(rule, frame.schema[rule.name]).alias(rule.name)
        for rule in contract.fields
        if rule.name in frame.columns
    )


def key_text_column(key: pl.Expr, key_type: str) -> pl.Expr:
    """Entity keys as their canonical text, the form the online store keys them by (``data.values``):
    for an integer key its digits, whatever the spelling logged (42, "0042", " 42 ", 42.0)."""
    text = key.cast(pl.String)
    if key_type != "integer":
        return text
    return text.str.strip_chars().str.replace(r"\.0*$", "").cast(pl.Int64, strict=False).cast(pl.String)


def parse_times(text: pl.Expr, format: str | None = None) -> pl.Expr:
    """Text times as UTC datetimes (µs): ISO 8601's common forms, so a column mixing '2026-05-02 14:03:07'
    and '2026-05-02T14:03:07Z' reads whole, then the field's declared ``format`` (``UNIX_SECONDS``: text of
    digits); text that is none of them becomes null."""
    if format == UNIX_SECONDS:
        digits = text.str.strip_chars()
        seconds = pl.when(digits.str.contains(r"^[0-9]+(\.[0-9]+)?$")).then(digits.cast(pl.Float64, strict=False))
        return pl.coalesce(unix_seconds(seconds), parse_times(text))
    formats = [*TIMESTAMP_FORMATS, *([format] if format else [])]
    return pl.coalesce([text.str.to_datetime(format=f, time_zone="UTC", strict=False, time_unit="us") for f in formats])


def unix_seconds(seconds: pl.Expr) -> pl.Expr:
    """Numbers of seconds since the epoch as UTC datetimes (µs); outside 1970..2200 (``MAX_TIMESTAMP_S``, as a
    request's time must be), null: a larger number is likely milliseconds, and is no far-future time."""
    micros = (seconds.cast(pl.Float64) * 1_000_000).round(0).cast(pl.Int64, strict=False)
    return pl.when(seconds.is_between(0, MAX_TIMESTAMP_S)).then(micros).cast(pl.Datetime("us", "UTC"))


def cast_column(rule: FieldRule, source: pl.DataType) -> pl.Expr:
    """A column of type ``source`` read as the rule's declared type (what does not read becomes null)."""
    col, target = pl.col(rule.name), POLARS_TYPES[rule.type]
    if source == target:
        return col
    if rule.type == "timestamp":
        if source == pl.String:
            return parse_times(col, rule.format)
        if isinstance(source, pl.Datetime):
            zoned = col.dt.replace_time_zone("UTC") if source.time_zone is None else col.dt.convert_time_zone("UTC")
            return zoned.dt.cast_time_unit("us")
        if source.is_numeric():
            # seconds, milliseconds or microseconds? A file's number says none: polars would read microseconds
            # and date Unix seconds to January 1970. Read only as the contract declares (format "%s": seconds);
            # else refused (check_batch says to declare the format or convert them).
            return unix_seconds(col) if rule.format == UNIX_SECONDS else pl.lit(None, target)
    if rule.type == "boolean" and source == pl.String:
        lowered = col.str.strip_chars().str.to_lowercase()
        return lowered.replace_strict(BOOLEAN_TEXT, default=None, return_dtype=pl.Boolean)
    if rule.type == "boolean" and source.is_numeric():
        return pl.when(col == 1).then(True).when(col == 0).then(False)  # a flag is 0 or 1; 2 is not a boolean
    if rule.type in ("integer", "float") and source == pl.Boolean:
        return pl.lit(None, target)  # a flag where a number belongs is not a number
    if rule.type == "integer" and source.is_float():
        return pl.when(col.round(0) == col).then(col.cast(target, strict=False))  # 1121.5 is no integer
    return col.cast(target, strict=False)


def _value_reasons(rule: FieldRule) -> list[pl.Expr]:
    col = pl.col(rule.name)
    checks: list[tuple[pl.Expr, str]] = []
    if not rule.nullable:
        checks.append((col.is_null() & (pl.col("_type") == ""), "null"))
    if rule.min is not None:
        checks.append((col < rule.min, f"below {rule.min}"))
    if rule.max is not None:
        checks.append((col > rule.max, f"above {rule.max}"))
    if rule.allowed_values is not None:
        checks.append((~col.is_in(rule.allowed_values), "not an allowed value"))
    if rule.unique:  # a null names no row, so nulls repeat nothing
        checks.append((col.is_duplicated() & col.is_not_null(), "duplicate"))
    return [pl.when(failed.fill_null(False)).then(pl.lit(f"{rule.name}: {what}")) for failed, what in checks]


def _horizon_reasons(contract: DataContract, horizon: EventHorizon, now: float) -> list[pl.Expr]:
    # An event time past the clock (and its allowance for clients' clocks) has not happened: kept, one such
    # row would stretch the batch's days (its volume check), put a training set's evaluation days after every
    # real event, and carry an entity's online row into the future. The past is history, however old: a
    # bound there would quarantine a little more of the same file each day, and its snapshot would change.
    name = contract.contract.event_time
    if not any(rule.name == name and rule.type == "timestamp" for rule in contract.fields):
        return []
    latest = datetime.fromtimestamp(horizon.bounds(now)[1], UTC)
    return [
        pl.when(pl.col(name) > latest).then(
            pl.lit(f'{name}: after {_minute(latest)}, the clock plus [data] event_time_future = "{horizon.future}"')
        )
    ]


def _horizon_warnings(contract: DataContract, horizon: EventHorizon, quarantined: pl.DataFrame) -> list[str]:
    name = contract.contract.event_time
    later = quarantined.filter(pl.col("reason").str.contains(f"{name}: after ", literal=True)).height
    if not later:
        return []
    return [
        f"{later:,} rows quarantined for an event time after the clock plus [data] event_time_future = "
        f'"{horizon.future}"; fix their times (a zone taken for UTC?) or widen it in the model\'s spec, and '
        "ingest the file again"
    ]


def _age(age: object) -> str:
    """An age (a timedelta) as a person reads it: '9.6 days', '5.2 h', '14 min'."""
    assert isinstance(age, timedelta)
    hours = age.total_seconds() / 3600
    if hours >= 24:
        return f"{hours / 24:.1f} days"
    return f"{hours:.1f} h" if hours >= 1 else f"{age.total_seconds() / 60:.0f} min"


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _batch_warnings(contract: DataContract, accepted: pl.DataFrame, as_of: datetime | None) -> list[str]:
    event_time = contract.contract.event_time
    warnings: list[str] = []
    if accepted.height == 0 or event_time not in accepted.columns:
        return warnings
    first, last = accepted[event_time].min(), accepted[event_time].max()
    if contract.volume:
        days = max((last - first).total_seconds() / 86400, 1.0)
        per_day = accepted.height / days
        floor = contract.volume.min_rows_per_day
        if per_day < floor * VOLUME_FLOOR_SHARE:
            raise InvalidInput(
                f"batch has {per_day:,.0f} accepted rows per day over its {days:,.0f} days of event time "
                f"({str(first)[:10]} .. {str(last)[:10]}), far below the contract's {floor:,} (refused under "
                f"{VOLUME_FLOOR_SHARE:.0%} of it); nothing was written — check the export that produced this file"
            )
        if per_day < floor:
            warnings.append(f"volume {per_day:,.0f} rows/day is below the contract's {floor:,}")
    if contract.freshness and as_of is not None:
        age = as_of - last
        if age > contract.freshness.limit:
            warnings.append(
                f"stale: newest event is {_age(age)} old, the contract allows {contract.freshness.max_staleness}"
            )
    return warnings

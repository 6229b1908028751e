"""Drafting a model spec and a data contract from the user's data file, for the user to read and edit.

Every rule that shapes the draft is stated as one line of ``Draft.assumptions``, so the user sees
what was guessed and why before training anything on it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import polars as pl

from appliance.data.contract import (
    ContractInfo,
    DataContract,
    FieldRule,
    cast_column,
    check_batch,
    load_contract,
)
from appliance.data.sources import read_source, zero_padded
from appliance.data.values import BOOLEAN_PAIRS, UNIX_SECONDS, iso, time_format_problem
from appliance.errors import InvalidInput
from appliance.spec import ValidationSection, load_spec
from appliance.spec.monitoring import MonitoringSection
from appliance.task import TaskKind

ALLOWED_VALUES_MAX = 50  # a string or integer code column with at most this many values lists them
CATEGORY_MAX = 1000  # a string column with more distinct values is not a category feature
MOSTLY_NULL = 0.5  # a column null in more than this share of rows is not a feature
EVAL_SHARE = 0.2  # the share of the data's days held out for evaluation
MIN_STALENESS_DAYS = 3
SMALL_DATA_ROWS = 10_000  # fewer labelled rows than this get smaller trees
STARTING_GATES = {"min_auc": 0.6, "min_recall": 0.0}
CODES_MAX = 20  # whole numbers with 3..this many values are taken for class codes, more for a quantity
EVAL_MIN_ROWS = 100  # regression: labelled rows each side of the evaluation split should hold at least
ABOVE_CHANCE = 0.1  # a first classifier's gate asks this much above guessing (binary: min_auc 0.6)
DEFAULT_MAX_MISSING = ValidationSection().max_missing_share  # the spec's default
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Text times other than ISO 8601 that a draft recognises: a day, a month and a four-digit year separated by
# one of these, then the clock or nothing. Which of day and month comes first only the data can say.
_DATE_SEPARATORS = "/-."
_CLOCKS = (" %H:%M:%S", " %H:%M", "")
_LOOKS_DATED = re.compile(r"\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{4}")
_ISO_WHY = "text that parses as ISO 8601 times, read as UTC where no offset is given"
# Numbers a draft reads as Unix seconds: all of a column's values within 2000..2100 as seconds (the contract reads
# 1970..2200), and only where --time names the column or its name says a time: a count or an id may lie there too.
_SECONDS_FROM, _SECONDS_UNTIL = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
_TIME_NAME = re.compile(r"ts|time|timestamp|epoch|.*_(at|time|ts)", re.IGNORECASE)
_TEXT = (pl.String, pl.Categorical, pl.Enum)
# Pairs of text values of which one plainly is the positive class (lower-cased); any other pair is the user's
# to name with --positive: is "bad" of good/bad, or "churned" of churned/stayed, the class wanted? Usually,
# but a draft does not guess.
_PLAIN_POSITIVE = {
    frozenset({"yes", "no"}): "yes",
    frozenset({"y", "n"}): "y",
    frozenset({"positive", "negative"}): "positive",
}


class Draft(msgspec.Struct):
    """A drafted model: the two files' text, where they go, and what was assumed to write them."""

    name: str
    spec_path: Path
    contract_path: Path
    spec_text: str
    contract_text: str
    assumptions: list[str]


class _Target(msgspec.Struct):
    rule: FieldRule
    task: TaskKind
    classes: list[str | int] | None  # multiclass: the classes seen, sorted (the model's output order)
    why: str
    positive: str | None = None  # binary of two text values: the positive one (label 1)


class _Times(msgspec.Struct):
    """The file's text and number columns that read as times: each one's format (None: ISO 8601;
    ``UNIX_SECONDS``: numbers) and why, and the columns of dates whose day and month the data do not tell
    apart, with the error that says so."""

    formats: dict[str, tuple[str | None, str]]
    unsettled: dict[str, str]

    def format_of(self, column: str) -> str | None:
        """The column's format for the contract (None: ISO 8601 text, or not text times)."""
        return self.formats[column][0] if column in self.formats else None


class _Column(msgspec.Struct):
    rule: FieldRule | None  # None: no contract type fits, so the column is left out of the contract
    feature: str | None  # the request feature type, or None: left out of the features
    why: str  # the assumption line for this column


def draft_model(
    source: Path,
    target: str,
    out: Path,
    time: str | None = None,
    entity: str | None = None,
    name: str | None = None,
    task: TaskKind | None = None,
    time_format: str | None = None,
    positive: str | None = None,
) -> Draft:
    """Infer a data contract and a model spec from ``source``; nothing is written (see ``write_draft``).
    ``task`` None: guessed from the target's values (see ``_target``); ``time_format``: how the file's text
    times are spelled, None: ISO 8601, or a day-first or month-first spelling the data settle; ``positive``: which
    of a text target's two values is the positive class (None: refused unless plain, see ``_text_binary``)."""
    source, out = Path(source), Path(out)
    name = _model_name(source, name)
    spec_path, contract_path = out / f"{name}.toml", out / f"{name}.contract.toml"
    _refuse_existing(spec_path, contract_path)
    if time_format is not None and (problem := time_format_problem(time_format)):
        raise InvalidInput(f"--time-format: {problem}")
    frame = read_source(source, retry="run `appliance init --from` again")
    if frame.height == 0:
        raise InvalidInput(f"{source} holds no rows; draft from a file with the data the model learns from")
    for flag, column in (("--target", target), ("--time", time), ("--entity", entity)):
        if column is not None and column not in frame.columns:
            raise InvalidInput(
                f"{source} has no column '{column}'; pass {flag} with one of: {', '.join(frame.columns)}"
            )
    roles = [c for c in (target, time, entity) if c is not None]
    if len(set(roles)) != len(roles):
        raise InvalidInput(f"--target, --time and --entity must name different columns, got {roles}")

    assumptions: list[str] = []
    drafted = _target(frame, source, target, task, positive)
    times = _times(frame, time, time_format)
    time = _time_column(frame, source, time, times, assumptions)
    columns: dict[str, _Column] = {}
    for column in frame.columns:
        if column == target:
            columns[column] = _Column(drafted.rule, None, drafted.why)
        elif column == time:
            columns[column] = _time_rule(frame, column, times)
        elif column == entity:
            columns[column] = _entity_rule(frame, source, column)
        else:
            columns[column] = _feature_column(frame, column, times, entity is None)
    assumptions[:0] = [f"column '{c}': {d.why}" for c, d in columns.items()]
    features = [(c, d.feature) for c, d in columns.items() if d.feature is not None]
    if not features:
        raise InvalidInput(
            f"no column of {source} can be a request feature ("
            + "; ".join(f"{c}: {d.why}" for c, d in columns.items())
            + "); add the columns the model should learn from"
        )
    contract = DataContract(
        contract=ContractInfo(
            name=name,
            version="1.0",
            event_time=time,
            description=f"Drafted from {source.name} by `appliance init --from`; say here "
            "what one row is and where it comes from.",
        ),
        fields=[d.rule for d in columns.values() if d.rule is not None],
    )
    accepted = _accepted(source, frame, contract, time)
    volume, volume_why = _volume(accepted[time])
    staleness, staleness_why = _staleness(accepted[time])
    contract_text = _contract_toml(contract, columns, volume, volume_why, staleness, staleness_why)
    assumptions += [
        f"volume: min_rows_per_day {volume} — {volume_why}",
        f"freshness: max_staleness {staleness} — {staleness_why}",
        *_small_windows(accepted[time]),
    ]

    # a binary target as 0/1 (a boolean column too, a text one 1 where positive), a class as itself, a value as a float
    label = {
        "binary": (pl.col(target) if drafted.positive is None else pl.col(target) == drafted.positive).cast(pl.Int8),
        "multiclass": pl.col(target),
        "regression": pl.col(target).cast(pl.Float64),
    }[drafted.task]
    labelled = accepted.filter(pl.col(target).is_not_null()).select(_day=pl.col(time).dt.truncate("1d"), _label=label)
    eval_days, eval_why = _eval_days(labelled, drafted)
    params, params_why = _params(labelled.height)
    missing = max((frame[c].null_count() / frame.height for c, _ in features), default=0.0)
    max_missing = (
        DEFAULT_MAX_MISSING if missing <= DEFAULT_MAX_MISSING else round(math.ceil(missing * 20) / 20 + 0.05, 2)
    )
    assumptions.append(f"training: eval_days {eval_days} — {eval_why}")
    assumptions.append(f"training: {params_why}")
    gates, gates_why = _starting_gates(drafted, labelled, eval_days)
    assumptions.append(
        f"validation: {gates_why}"
        + (
            f"; max_missing_share {max_missing}: a feature is null in {missing:.1%} of rows (the default "
            f"{DEFAULT_MAX_MISSING} would stop training)"
            if max_missing != DEFAULT_MAX_MISSING
            else ""
        )
    )
    here = source.resolve()
    data_source = str(here.relative_to(out.resolve()) if here.is_relative_to(out.resolve()) else here)
    spec_text = _spec_toml(
        name,
        source,
        data_source,
        contract_path.name,
        time,
        entity,
        target,
        drafted,
        features,
        eval_days,
        eval_why,
        params,
        params_why,
        gates,
        max_missing,
    )
    return Draft(name, spec_path, contract_path, spec_text, contract_text, assumptions)


def write_draft(draft: Draft) -> None:
    """Write the drafted contract and spec, each to a temporary name first: both appear, or neither."""
    _refuse_existing(draft.spec_path, draft.contract_path)
    folder = draft.spec_path.parent
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"--out {folder} is a file; pass a folder for the spec and the contract")
    temporary = {
        path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in (draft.contract_path, draft.spec_path)
    }
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in ((draft.contract_path, draft.contract_text), (draft.spec_path, draft.spec_text)):
            temporary[path].write_text(text)
        load_contract(temporary[draft.contract_path])
        load_spec(temporary[draft.spec_path])
        _refuse_existing(draft.spec_path, draft.contract_path)
        for path, tmp in temporary.items():
            tmp.rename(path)
            written.append(path)
    except BaseException as e:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise InvalidInput(
                f"could not write the draft to {folder} ({e.strerror or e}); nothing was written — "
                "pass --out DIR with a folder you can write to"
            ) from None
        raise
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)


# -- names and files -----------------------------------------------------------------------------


def _model_name(source: Path, name: str | None) -> str:
    if name is not None:
        if not _NAME.fullmatch(name):
            raise InvalidInput(f"--name {name!r} must be letters, digits, '_' or '-', starting with a letter or digit")
        return name
    stem = source.name if source.is_dir() else source.stem
    return re.sub(r"[^a-z0-9_-]+", "_", stem.lower()).strip("_-") or "model"


def _refuse_existing(*paths: Path) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise InvalidInput(
            f"{' and '.join(existing)} already {'exist' if len(existing) > 1 else 'exists'}; "
            "nothing was written — pass --out DIR (or --name NAME) or remove them"
        )


# -- columns -------------------------------------------------------------------------------------


def _reads_as(frame: pl.DataFrame, column: str, type: str, format: str | None = None) -> bool:
    """Whether every non-null value of ``column`` reads as ``type`` (a timestamp's text in ``format``) by
    the contract's own rules."""
    return frame[column].null_count() < frame.height and _first_unreadable(frame, column, type, format) is None


def _first_unreadable(frame: pl.DataFrame, column: str, type: str, format: str | None = None) -> object:
    """The first non-null value of ``column`` that does not read as ``type`` (None: every one does)."""
    values = frame[column].drop_nulls()
    read = values.to_frame().select(cast_column(FieldRule(column, type, format=format), values.dtype))[column]
    unreadable = values.filter(read.is_null())
    return unreadable[0] if unreadable.len() else None


def _times(frame: pl.DataFrame, time: str | None, time_format: str | None) -> _Times:
    """Which columns read as times, and in what format. Numbers (or, with --time-format "%s", text of digits)
    as Unix seconds, where ``time`` (--time) names the column or its name says a time (``_unix_seconds``).
    Text: ISO 8601, else ``time_format`` if given, else a dd/mm/yyyy or mm/dd/yyyy spelling when a value above
    12 says which number is the day. Nothing is guessed: dates that read both ways are unsettled, for the user
    to name with --time-format."""
    formats: dict[str, tuple[str | None, str]] = {}
    unsettled: dict[str, str] = {}
    for column in frame.columns:
        values = frame[column].drop_nulls()
        named = column == time or _TIME_NAME.fullmatch(column) is not None
        if frame.schema[column].is_numeric() and named and (seconds := _unix_seconds(frame, column)):
            by_name = "" if column == time else "; taken for a time by its name, every value within 2000..2100"
            formats[column] = (UNIX_SECONDS, seconds + by_name)
        if frame.schema[column] != pl.String or values.len() == 0:
            continue
        if _reads_as(frame, column, "timestamp"):
            formats[column] = (None, _ISO_WHY)
        elif time_format == UNIX_SECONDS:
            if named and (seconds := _unix_seconds(frame, column)):
                formats[column] = (UNIX_SECONDS, f'{seconds}, text in --time-format "%s"')
        elif time_format is not None:
            if _reads_as(frame, column, "timestamp", time_format):
                formats[column] = (time_format, f"text times in --time-format {_str(time_format)}, read as UTC")
        elif _LOOKS_DATED.match(values[0]):
            for separator, clock in ((s, c) for s in _DATE_SEPARATORS for c in _CLOCKS):
                day_first, month_first = (
                    f"%d{separator}%m{separator}%Y{clock}",
                    f"%m{separator}%d{separator}%Y{clock}",
                )
                read = [f for f in (day_first, month_first) if _reads_as(frame, column, "timestamp", f)]
                if len(read) == 2:
                    unsettled[column] = (
                        f"column '{column}' holds dates like {values[0]!r} whose day and month the data do not "
                        "tell apart (no value goes above 12 in either place); pass --time-format "
                        f"{_str(day_first)} (day first) or {_str(month_first)} (month first)"
                    )
                elif read:
                    other = month_first if read[0] == day_first else day_first
                    evidence = _first_unreadable(frame, column, "timestamp", other)
                    place, first = ("first", "day") if read[0] == day_first else ("second", "month")
                    formats[column] = (
                        read[0],
                        f"text times written {_str(read[0])}, the {first} first: the {place} number goes above 12 "
                        f"(e.g. {evidence!r}), so it is the day; read as UTC",
                    )
                if read:
                    break
    return _Times(formats, unsettled)


def _unix_seconds(frame: pl.DataFrame, column: str) -> str | None:
    """Why ``column`` reads as Unix seconds: each of its values does, within 2000..2100 (None: not so)."""
    values = frame[column].drop_nulls()
    if values.len() == 0:
        return None
    read = values.to_frame().select(cast_column(FieldRule(column, "timestamp", format=UNIX_SECONDS), values.dtype))
    moments = read[column]
    if moments.null_count() or not moments.is_between(_SECONDS_FROM, _SECONDS_UNTIL, closed="left").all():
        return None
    return f"Unix seconds (values like {values[0]} = {iso(moments[0])})"


def _base_type(frame: pl.DataFrame, column: str, times: _Times) -> tuple[str | None, str]:
    """The contract type a column reads as, and why (None: no contract type fits)."""
    dtype, values = frame.schema[column], frame[column].drop_nulls()
    if values.len() == 0:
        return "string", "every value is null"
    if column in times.formats:
        return "timestamp", times.formats[column][1]
    if dtype == pl.Boolean:
        return "boolean", "true/false values"
    if dtype.is_integer():
        return "integer", "whole numbers"
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return "float", "floating-point numbers"
    if isinstance(dtype, (pl.Datetime, pl.Date)):
        return "timestamp", "dates/times"
    if isinstance(dtype, _TEXT):
        spelled = set(values.cast(pl.String).str.strip_chars().str.to_lowercase().unique())
        pair = next((sorted(p, reverse=True) for p in BOOLEAN_PAIRS if spelled <= p), None)
        if pair is not None:
            return "boolean", f'text that is only "{pair[0]}"/"{pair[1]}" (any case), read as true/false'
        if column in times.unsettled:
            return "string", "dates whose day and month the data do not tell apart, kept as text (pass --time-format)"
        if (padded := zero_padded(values.cast(pl.String))) is not None:
            return "string", _zeros_why(padded)
        return "string", "text"
    return None, f"its type {dtype} has no contract type"


def _feature_column(frame: pl.DataFrame, column: str, times: _Times, no_entity: bool) -> _Column:
    """A column that is neither target, time nor entity: its contract rule and whether it is a feature."""
    type, why = _base_type(frame, column, times)
    series = frame[column]
    values = series.drop_nulls()
    nullable = series.null_count() > 0
    distinct = values.n_unique() if values.len() else 0
    null_note = f", null in {series.null_count() / frame.height:.1%} of rows" if nullable else ""
    if type is None:
        return _Column(None, None, f"{why}: left out of the contract and the features (ingest drops it)")
    if type == "integer" and distinct == 2 and set(values.unique().to_list()) == {0, 1}:
        type, why = "boolean", "whole numbers that are only 0 and 1"
    rule = FieldRule(column, type, nullable=nullable, format=times.format_of(column))
    why = f"{type} ({why}{null_note})"
    if values.len() == 0:
        return _Column(rule, None, f"{why}: left out of the features")
    if type in ("integer", "string") and series.n_unique() == frame.height and frame.height > 1:
        rule = msgspec.structs.replace(rule, unique=True)
        return _Column(rule, None, f"{why}, every value distinct → unique; an identifier, left out of the features")
    if distinct == 1:
        return _Column(
            rule, None, f"{why}, a single value ({values[0]!r}): carries nothing to learn, left out of the features"
        )
    if type == "timestamp":
        return _Column(rule, None, f"{why}: a time is not a feature type, left out of the features")
    mostly_null = series.null_count() / frame.height > MOSTLY_NULL
    feature = {"boolean": "boolean", "float": "float", "integer": "integer", "string": "category"}[type]
    if type == "integer" and distinct <= ALLOWED_VALUES_MAX and values.max() - values.min() + 1 != distinct:
        listed = sorted(values.unique().to_list())
        rule = msgspec.structs.replace(rule, allowed_values=listed)
        feature, why = "category", f"{why}, {distinct} distinct codes with gaps → allowed_values {_short(listed)}"
    elif type in ("integer", "float"):
        rule, range_why = _range(rule, values)
        why = f"{why}, {range_why}"
        if type == "integer" and distinct <= ALLOWED_VALUES_MAX:
            why += (
                f", {distinct} values without gaps: read as a quantity, not codes (make it a category with "
                "allowed_values if they are codes)"
            )
    elif type == "string":
        if distinct <= ALLOWED_VALUES_MAX:
            listed = sorted(values.cast(pl.String).unique().to_list())
            rule = msgspec.structs.replace(rule, allowed_values=listed)
            why = f"{why}, {distinct} distinct values → allowed_values {_short(listed)}"
        elif distinct > values.len() / 2:
            return _Column(
                rule,
                None,
                f"{why}, {distinct:,} distinct values in {values.len():,} rows: an "
                "identifier or free text, left out of the features",
            )
        elif distinct > CATEGORY_MAX:
            hint = f" (if it names an entity, pass --entity {column})" if no_entity else ""
            return _Column(
                rule,
                None,
                f"{why}, {distinct:,} distinct values: too many for a category, left out of the features{hint}",
            )
        else:
            why = f"{why}, {distinct:,} distinct values: too many to list as allowed values"
    if mostly_null:
        return _Column(rule, None, f"{why}: null in more than {MOSTLY_NULL:.0%} of rows, left out of the features")
    if type in ("integer", "float") and (seconds := _unix_seconds(frame, column)):
        # its name does not say a time (see _times), but a clock as a feature is never in range once served
        why += f"; {seconds}? a time is no feature: pass --time {column}, or take it out of the features"
    return _Column(rule, feature, f"{why}: {'an' if feature == 'integer' else 'a'} {feature} request feature")


def _range(rule: FieldRule, values: pl.Series) -> tuple[FieldRule, str]:
    """min/max from the data, widened by half its span on each side (never below 0 for a column with no
    negative value), rounded outward, so the next batch's new extremes are not quarantined."""
    finite = values.filter(values.is_finite()) if values.dtype.is_float() else values
    if finite.len() < values.len() or finite.len() == 0:
        return rule, "holds infinite or NaN values, so no min/max"
    low, high = float(finite.min()), float(finite.max())
    span = (high - low) or max(abs(high), 1.0)
    lo, hi = low - span / 2, high + span / 2
    if low >= 0:
        lo = max(lo, 0.0)
    step = 10.0 ** math.floor(math.log10(span)) / 10
    digits = max(0, -math.floor(math.log10(step)))
    lo, hi = round(math.floor(lo / step) * step, digits), round(math.ceil(hi / step) * step, digits)
    if rule.type == "integer":
        lo, hi = math.floor(lo), math.ceil(hi)
    rule = msgspec.structs.replace(rule, min=lo, max=hi)
    return rule, (
        f"seen {_num(_significant(low))}..{_num(_significant(high))} → min {_num(lo)}, max {_num(hi)} (widened "
        f"by half the range{', not below 0' if low >= 0 else ''})"
    )


def _target(frame: pl.DataFrame, source: Path, target: str, task: TaskKind | None, positive: str | None) -> _Target:
    """The target's contract rule and the model's task: ``task`` as given, else guessed from the values —
    two values coded 0/1 or true/false, or two texts (``positive`` naming the positive one), are binary; text
    with 3..50 values, or whole numbers with 3..20, are classes; other numbers are a value to predict. Values
    that do not fit the task are refused."""
    series = frame[target]
    values = series.drop_nulls()
    dtype = series.dtype
    text = isinstance(dtype, _TEXT)
    where = f"target '{target}' of {source}"
    if values.len() == 0:
        raise InvalidInput(
            f"{where} has no values (every row is null); pass --target with the column the model learns to predict"
        )
    lowered = values.cast(pl.String).str.to_lowercase() if text else values
    if lowered.n_unique() == 2 and (
        dtype == pl.Boolean
        or set(lowered.unique().to_list()) == {"true", "false"}
        or (dtype.is_numeric() and set(values.unique().to_list()) == {0, 1})
    ):
        coded = "binary"  # what binary models have always been drafted from
    elif text or dtype == pl.Boolean:
        coded = "text"
    elif dtype.is_integer() or (dtype.is_float() and values.is_finite().all() and (values.round(0) == values).all()):
        coded = "whole"  # integral floats too: pandas writes an integer column with gaps as floats
    elif dtype.is_numeric():
        coded = "number"
    else:
        raise InvalidInput(
            f"{where} has type {dtype}, which no task reads; a target is 0/1, true/false, class "
            "labels (text or whole numbers) or a number — pass another column"
        )
    seen = sorted(values.cast(pl.String).unique().to_list()) if text else sorted(values.unique().to_list())
    distinct = len(seen)
    named = text and coded == "text" and distinct == 2  # two texts: binary, one of them the positive class
    if positive is not None and not (named and task in (None, "binary")):
        raise InvalidInput(
            f"--positive names one of a binary target's two text values; {where} holds {distinct:,} distinct "
            f"value(s) {_short(seen)}{' (its 1 or true is the positive class)' if coded == 'binary' else ''} — "
            "leave --positive out"
        )
    guessed = task is None
    if guessed:
        task = "binary" if named else _guess_task(where, coded, seen)
    elif task == "binary" and coded != "binary" and not named:
        ways = ["map them to 0/1 in the file (1 for the class the model gives the probability of)"] * (distinct == 2)
        ways += ["pass --task multiclass for classes"] * (coded in ("text", "whole") and distinct >= 3)
        ways += ["pass --task regression for a number"] * (coded in ("whole", "number") and distinct >= 2)
        raise InvalidInput(
            f"--task binary: {where} holds {distinct:,} distinct value(s) {_short(seen)}; a binary "
            "target holds two, coded 0/1 or true/false — "
            + (" or ".join(ways) or "pass the column the model learns to predict")
        )
    elif task == "multiclass" and (coded == "number" or distinct < 3):
        raise InvalidInput(
            f"--task multiclass: {where} holds fractional numbers (e.g. {_short(seen[:3])}); classes are text or "
            "whole numbers — pass --task regression for a number"
            if coded == "number"
            else f"--task multiclass: {where} holds {distinct} distinct value(s) {_short(seen)}; a multiclass target "
            "has three or more classes — for two, pass --task binary (with --positive VALUE naming the positive "
            "one of two texts)"
        )
    elif task == "regression" and coded not in ("whole", "number") and not (coded == "binary" and dtype.is_numeric()):
        flags = coded == "binary" or dtype == pl.Boolean
        raise InvalidInput(
            f"--task regression: {where} holds {'true/false' if flags else 'text'} (e.g. "
            f"{_short(seen[:3])}); a regression target is a number — pass "
            f"{'--task binary' if flags else '--task multiclass for classes'} or leave --task out"
        )
    if task == "regression" and distinct < 2:
        raise InvalidInput(
            f"{where} holds a single value {_short(seen)}; there is nothing to learn — pass the "
            "column the model learns to predict"
        )
    if task == "multiclass" and distinct > values.len() / 2:
        raise InvalidInput(
            f"{where} holds {distinct:,} distinct values in {values.len():,} labelled rows, most "
            "of them once: an identifier or free text, not classes a model can learn — pass another "
            "column"
        )

    nullable = series.null_count() > 0
    unlabelled = f"; {series.null_count():,} rows without a label are kept as unlabelled" if nullable else ""
    if task == "binary" and named:
        return _text_binary(target, where, seen, positive, values, nullable, unlabelled)
    if task == "binary":
        rule, why = _binary_rule(target, values, dtype, nullable)
        return _Target(rule, "binary", None, f"{why}{unlabelled}")
    if task == "multiclass":
        classes = seen if text else [int(v) for v in seen]
        rule = FieldRule(target, "string" if text else "integer", nullable=nullable, allowed_values=classes)
        labels = values.cast(pl.String) if text else values.cast(pl.Int64)
        counts = labels.value_counts().sort(["count", target], descending=[True, False])
        (most, most_n), (least, least_n) = counts.row(0), counts.row(-1)
        codes = (
            f"; whole numbers with {distinct} values, taken for class codes — pass --task regression to "
            "treat them as a number"
            if coded == "whole" and guessed
            else ""
        )
        many = (
            f"; more classes than the {ALLOWED_VALUES_MAX} a text target is guessed to have: check they are classes"
            if distinct > ALLOWED_VALUES_MAX
            else ""
        )
        return _Target(
            rule,
            "multiclass",
            classes,
            (
                f"the target, {distinct} classes ({rule.type}, allowed_values {_short(classes)}, sorted: the order of "
                f"[target] classes and of the model's probabilities), most common {most!r} in "
                f"{most_n / values.len():.1%} and least common {least!r} in {least_n / values.len():.1%} of "
                f"{values.len():,} labelled rows"
                f"{codes}{many}{unlabelled}"
            ),
        )
    rule, range_why = _range(FieldRule(target, "integer" if dtype.is_integer() else "float", nullable=nullable), values)
    if rule.min is None:  # NaN or infinity: no metric can be computed on them
        raise InvalidInput(
            f"{where} holds NaN or infinite values; a regression target is a finite number — fix "
            "or remove those rows in the file"
        )
    quantity = (
        f"; whole numbers with {distinct:,} values, more than {CODES_MAX}: read as a quantity — pass --task "
        "multiclass if they are class codes"
        if coded == "whole" and guessed
        else ""
    )
    return _Target(
        rule,
        "regression",
        None,
        (
            f"the target, a number to predict ({rule.type}, {range_why}), mean {values.mean():.6g}, median "
            f"{values.median():.6g} over {values.len():,} labelled rows{quantity}{unlabelled}"
        ),
    )


def _guess_task(where: str, coded: str, seen: list) -> TaskKind:
    """The task a target's values suggest, or a refusal saying which --task fits if any does."""
    distinct = len(seen)
    if coded == "binary":
        return "binary"
    if distinct < 2:
        raise InvalidInput(
            f"{where} holds a single value {_short(seen)}; there is nothing to learn — pass the "
            "column the model learns to predict"
        )
    if distinct == 2:
        number = " (or --task regression if it is a number)" if coded in ("whole", "number") else ""
        raise InvalidInput(
            f"{where} holds two values {_short(seen)}: a two-class target is binary, coded 0/1 or "
            "true/false — map them to 0/1 in the file (1 for the class the model gives the "
            f"probability of){number}"
        )
    if coded == "text":
        if distinct > ALLOWED_VALUES_MAX:
            # Many distinct texts are more often names, comments or identifiers than classes, and a spec and
            # contract listing them all would be unreadable; a user who knows they are classes says so.
            raise InvalidInput(
                f"{where} holds {distinct:,} distinct texts {_short(seen)}: more than the "
                f"{ALLOWED_VALUES_MAX} classes a target is taken to have, so it looks like free text "
                "— pass another column, or --task multiclass if these really are classes"
            )
        return "multiclass"
    if coded == "whole" and distinct <= CODES_MAX:
        return "multiclass"
    return "regression"


def _text_binary(
    target: str, where: str, seen: list[str], positive: str | None, values: pl.Series, nullable: bool, unlabelled: str
) -> _Target:
    """A target of two text values: binary, trained on 1 for the positive one, which ``positive`` (--positive)
    names, else the values when one plainly is it (yes of yes/no, see ``_PLAIN_POSITIVE``); no other guess."""
    if positive is None:
        plain = _PLAIN_POSITIVE.get(frozenset(v.lower() for v in seen))
        positive = next((v for v in seen if v.lower() == plain), None)
        if positive is None:
            raise InvalidInput(
                f"{where} holds two values {seen[0]!r} and {seen[1]!r}: a binary target — pass --positive "
                f"{shlex.quote(seen[0])} or --positive {shlex.quote(seen[1])}, the class the model gives the "
                "probability of"
            )
        other = next(v for v in seen if v != positive)
        how = (
            f"of {seen[0]!r} and {seen[1]!r}, {positive!r} plainly is the positive one; "
            f"--positive {shlex.quote(other)} for the other"
        )
    elif positive not in seen:
        raise InvalidInput(
            f"--positive {positive!r} is not a value of {where}, which holds {seen[0]!r} and {seen[1]!r} — pass "
            f"--positive {shlex.quote(seen[0])} or --positive {shlex.quote(seen[1])}"
        )
    else:
        how = "--positive"
    share = values.cast(pl.String).eq(positive).to_numpy().mean()
    listed: list[str | int | float] = [*seen]
    rule = FieldRule(target, "string", nullable=nullable, allowed_values=listed)
    return _Target(
        rule,
        "binary",
        None,
        (
            f"the target, two text values (string, allowed_values {_short(seen)}), positive {positive!r} ({how}): "
            f"the model gives its probability, trained on it as 1; {share:.1%} positive over {values.len():,} "
            f"labelled rows{unlabelled}"
        ),
        positive,
    )


def _binary_rule(target: str, values: pl.Series, dtype: pl.DataType, nullable: bool) -> tuple[FieldRule, str]:
    lowered = set(values.cast(pl.String).str.to_lowercase().unique().to_list()) if isinstance(dtype, _TEXT) else set()
    if dtype == pl.Boolean or lowered == {"true", "false"}:
        rule, kind = FieldRule(target, "boolean", nullable=nullable), "true/false"
        ones = values.cast(pl.String).str.to_lowercase().eq("true").mean() if lowered else values.mean()
    else:
        rule, kind = FieldRule(target, "integer", nullable=nullable, allowed_values=[0, 1]), "0/1"
        ones = values.mean()
    return rule, (
        f"the target, {kind} ({rule.type}{', allowed_values [0, 1]' if rule.allowed_values else ''}), "
        f"{ones:.1%} positive over {values.len():,} labelled rows"
    )


def _time_column(frame: pl.DataFrame, source: Path, time: str | None, times: _Times, assumptions: list[str]) -> str:
    if time is not None:
        if time in times.unsettled:
            raise InvalidInput(f"--time {times.unsettled[time]}")
        if _base_type(frame, time, times)[0] != "timestamp":
            values = frame[time].drop_nulls()
            if values.len() == 0:
                example = "every value null"
            else:
                bad = _first_unreadable(frame, time, "timestamp") if values.dtype == pl.String else values[0]
                example = f"e.g. {bad!r}"
            if values.dtype.is_numeric() and values.len():
                raise InvalidInput(
                    f"--time column '{time}' of {source} holds numbers ({frame.schema[time]}, e.g. "
                    f"{values[0]!r}) that are not all Unix seconds between 2000 and 2100 (milliseconds? divide "
                    "them by 1,000); pass a column of Unix seconds or of ISO 8601 times like 2026-10-16T09:30:00Z"
                )
            raise InvalidInput(
                f"--time column '{time}' of {source} does not read as times (type "
                f"{frame.schema[time]}, {example}); pass a column of ISO 8601 times like "
                '2026-10-16T09:30:00Z, or --time-format FORMAT naming how its text spells them ("%s": Unix seconds)'
            )
        return time
    found = [c for c in frame.columns if _base_type(frame, c, times)[0] == "timestamp"]
    if not found and times.unsettled:
        raise InvalidInput(next(iter(times.unsettled.values())))
    if not found:
        raise InvalidInput(
            f"no column of {source} reads as times, and a time column is required for now (it "
            "splits training from evaluation days and drives monitoring); add one of ISO 8601 "
            "times and pass --time COLUMN, or name how the file spells its times with --time-format, "
            'e.g. "%d/%m/%Y %H:%M" or "%b %d, %Y %I:%M %p"'
        )
    # A date alone is more often something a row records (a signup, a birth) than the moment it happened.
    timed = [c for c in found if not _dates_alone(frame, c, times)]
    chosen = (timed or found)[0]
    if len(found) > 1:
        assumptions.append(
            f"time column: '{chosen}', the first of the time columns {found}"
            + (" with a time of day (the others hold dates alone)" if chosen != found[0] else "")
            + " — pass --time to pick another"
        )
    return chosen


def _dates_alone(frame: pl.DataFrame, column: str, times: _Times) -> bool:
    """Whether every time of ``column`` is midnight: dates without a time of day."""
    rule = FieldRule(column, "timestamp", format=times.format_of(column))
    read = frame.select(cast_column(rule, frame.schema[column]))[column].drop_nulls()
    return bool((read == read.dt.truncate("1d")).all())


def _time_rule(frame: pl.DataFrame, column: str, times: _Times) -> _Column:
    nulls = frame[column].null_count()
    why = f"timestamp ({_base_type(frame, column, times)[1]}), the event time, not nullable"
    if nulls:
        why += f": its {nulls:,} rows without a time will be quarantined at ingest"
    format = times.format_of(column)
    return _Column(FieldRule(column, "timestamp", nullable=False, format=format), None, why)


def _entity_rule(frame: pl.DataFrame, source: Path, column: str) -> _Column:
    dtype = frame.schema[column]
    if dtype.is_integer():
        type = "integer"
    elif isinstance(dtype, _TEXT):
        type = "string"
    else:
        raise InvalidInput(
            f"--entity column '{column}' of {source} has type {dtype}; an entity key is text or "
            "a whole number — pass another column"
        )
    nulls = frame[column].null_count()
    rule = FieldRule(column, type, nullable=nulls > 0)
    padded = zero_padded(frame[column].cast(pl.String)) if type == "string" else None
    return _Column(
        rule,
        None,
        f"{type}{f' ({_zeros_why(padded)})' if padded is not None else ''}, the entity key (--entity; "
        f"{frame[column].n_unique():,} entities"
        f"{f', {nulls:,} rows without one' if nulls else ''}): left out of the request "
        "features",
    )


def _zeros_why(padded: str) -> str:
    return f"values like {padded!r} keep their leading zeros"


# -- volume, freshness, evaluation days ----------------------------------------------------------


def _volume(times: pl.Series) -> tuple[int, str]:
    """Half the 10th percentile of the daily row counts, and never above the whole file's rate as ingest
    measures it, so ingesting this same file neither refuses nor warns."""
    daily = times.dt.truncate("1d").value_counts()["count"]
    p10 = float(daily.quantile(0.1, interpolation="lower"))
    span = max((times.max() - times.min()).total_seconds() / 86400, 1.0)
    rate = times.len() / span
    floor = max(1, int(min(p10 / 2, rate)))
    capped = f", capped at the file's {rate:,.0f} rows per day over its whole span" if rate < p10 / 2 else ""
    return floor, (
        f"half the 10th percentile ({p10:,.0f}) of the rows per day over the data's {daily.len()} days"
        f"{capped}; ingest refuses a batch under half of it per day and warns under it"
    )


def _small_windows(times: pl.Series) -> list[str]:
    """A line when a day of this data holds fewer rows than a monitoring window needs to be judged: with the
    default daily windows, drift and accuracy would be reported but never alert, and nothing else would say so."""
    monitoring = MonitoringSection()
    daily = float(times.dt.truncate("1d").value_counts()["count"].quantile(0.5) or 0)  # the median day
    if daily >= monitoring.min_window_rows:
        return []
    days = next((d for d in (2, 3, 7) if d * daily >= monitoring.min_window_rows), None)
    wider = f'window = "{days}d" (about {days * daily:,.0f} rows) or ' if days else ""
    return [
        f"monitoring: window {monitoring.window} — a day holds about {daily:,.0f} rows here, under min_window_rows "
        f"{monitoring.min_window_rows}, so daily windows would be reported but never alert: set [monitoring] "
        f"{wider}a lower min_window_rows in the spec"
    ]


def _staleness(times: pl.Series) -> tuple[str, str]:
    ordered = times.unique().sort()
    gap = ordered.diff().max() if ordered.len() > 1 else None
    gap_days = gap.total_seconds() / 86400 if gap is not None else 0.0
    days = max(MIN_STALENESS_DAYS, math.ceil(2 * gap_days))
    why = (
        f"{MIN_STALENESS_DAYS} days, or twice the longest gap between events if longer (here {gap_days:.1f} "
        "days); ingest warns (never refuses) when a batch's newest event is older than that"
    )
    age = datetime.now(UTC) - times.max()
    if age > timedelta(days=days):
        why += f" — this file's newest event is {age.days} days old, so ingesting it now warns"
    return f"{days}d", why


def _eval_days(labelled: pl.DataFrame, target: _Target) -> tuple[int, str]:
    """About a fifth of the data's days, at least 1, leaving at least one training day; moved to the nearest
    split that gives training what it needs and evaluation what it measures: a classifier both classes
    (binary) or every class (multiclass, where some split can) on both sides, a regression at least
    ``EVAL_MIN_ROWS`` labelled rows on both sides. ``labelled``: ``_day``, ``_label``."""
    if labelled.height == 0:
        return 1, "no labelled rows to judge a split on"
    first, last = labelled["_day"].min(), labelled["_day"].max()
    days = (last - first).days + 1
    wanted = max(1, round(days * EVAL_SHARE))
    if days < 2:
        return 1, (
            f"the labelled rows cover {days} day; training holds out the last eval_days days, so ingest more "
            "days before training"
        )
    wanted = min(wanted, days - 1)
    goal, unusable = {
        "binary": ("both parts hold both classes", "both classes on both sides"),
        "multiclass": ("both parts hold every class", "two classes on both sides"),
        "regression": (f"both parts hold at least {EVAL_MIN_ROWS} labelled rows", "two different values on both sides"),
    }[target.task]
    # One row a day (its rows, and its labels or its lowest and highest value), so trying every split stays
    # cheap on a long history.
    summary = (
        (pl.col("_label").min().alias("low"), pl.col("_label").max().alias("high"))
        if target.task == "regression"
        else (pl.col("_label").unique().alias("labels"),)
    )
    daily = labelled.group_by("_day").agg(pl.len().alias("rows"), *summary)

    def split(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        cutoff = last - timedelta(days=n - 1)
        return daily.filter(pl.col("_day") < cutoff), daily.filter(pl.col("_day") >= cutoff)

    def labels(part: pl.DataFrame) -> set:
        return set().union(*part["labels"].to_list())

    def shortfall(n: int) -> int | None:
        """None: training would refuse this split (a part with a single label); else how far it falls short of
        the goal (0: not at all) — classes missing from a part, or rows missing from the smaller part."""
        parts = split(n)
        if target.task == "regression":
            if any(part.height == 0 or part["low"].min() == part["high"].max() for part in parts):
                return None
            return max(0, EVAL_MIN_ROWS - min(part["rows"].sum() for part in parts))
        present = [len(labels(part)) for part in parts]
        if min(present) < 2:
            return None
        return sum(len(target.classes) - k for k in present) if target.task == "multiclass" else 0

    usable = [(short, abs(n - wanted), n) for n in range(1, days) if (short := shortfall(n)) is not None]
    if not usable:
        return wanted, (
            f"the last {wanted} of the data's {days} days; no split leaves {unusable}, "
            "so training will refuse until more labelled days are ingested"
        )
    short, _, n = min(usable)
    held = f"the last {n} of the data's {days} days are held out for evaluation"
    if short == 0:
        return n, held + ("" if n == wanted else f" (moved from {wanted} so {goal})")
    training, held_out = split(n)
    if target.task == "multiclass":
        lacking = [
            f"the {name} days lack {_short(sorted(set(target.classes) - labels(part)))}"
            for name, part in (("training", training), ("held-out", held_out))
            if len(labels(part)) < len(target.classes)
        ]
        return n, (
            f"{held}, the split nearest {wanted} that holds the most classes on both sides: "
            f"{' and '.join(lacking)} — ingest more labelled days of the rare classes"
        )
    rows = min(training["rows"].sum(), held_out["rows"].sum())
    return n, (
        f"{held}, the split nearest {wanted} with the most rows in its smaller part ({rows:,}, under "
        f"{EVAL_MIN_ROWS}): its metrics rest on few rows — ingest more labelled days"
    )


def _starting_gates(target: _Target, labelled: pl.DataFrame, eval_days: int) -> tuple[dict[str, object], str]:
    """The [validation] gates of a first model, by task, each a little above what no model at all scores,
    and the assumption line that says so."""
    later = "starting points for a first model"
    if target.task == "binary":
        return STARTING_GATES, (
            f"min_auc {STARTING_GATES['min_auc']}, min_recall {STARTING_GATES['min_recall']}, "
            f"no segments — {later}; raise them once you know what it achieves"
        )
    if target.task == "multiclass":
        # Guessing each row's class at random in the classes' shares scores a macro F1 of 1/k (each class's
        # precision and recall are its share); ask for ABOVE_CHANCE more, as min_auc 0.6 does over 0.5.
        k = len(target.classes)
        floor = math.ceil((1 / k + ABOVE_CHANCE) * 100) / 100
        return {"metric": "macro_f1", "min_metric": floor}, (
            f"metric macro_f1, min_metric {floor} — guessing each row's class in the classes' shares scores about "
            f"1/{k} ({1 / k:.2f}), this asks {ABOVE_CHANCE} more as min_auc 0.6 does of a binary model; no segments "
            f"— {later}; raise it once you know what it achieves"
        )
    # Regression: a version must beat predicting the training days' mean for every held-out row.
    cutoff = labelled["_day"].max() - timedelta(days=eval_days - 1) if labelled.height else None
    training = labelled.filter(pl.col("_day") < cutoff)["_label"] if cutoff else labelled["_label"]
    held_out = labelled.filter(pl.col("_day") >= cutoff)["_label"] if cutoff else labelled["_label"]
    if training.len() == 0 or held_out.len() == 0:
        return {"metric": "rmse"}, (
            f"metric rmse, no max_metric: no split to measure what predicting the mean "
            f"scores; no segments — {later}; set max_metric once you know what it achieves"
        )
    mean = training.mean()
    baseline = math.sqrt(((held_out - mean) ** 2).mean())
    if not baseline > 0:
        return {"metric": "rmse"}, (
            f"metric rmse, no max_metric: the held-out values all equal the training mean; "
            f"no segments — {later}; set max_metric once you know what it achieves"
        )
    ceiling = _round_down(baseline)
    return {"metric": "rmse", "max_metric": ceiling}, (
        f"metric rmse, max_metric {_num(ceiling)} — predicting the training days' mean ({mean:.6g}) for "
        f"every held-out row scores RMSE {baseline:,.4g}, so a version must beat that; no segments — {later}; "
        "lower it once you know what it achieves"
    )


def _round_down(value: float, digits: int = 3) -> float:
    """``value`` cut to ``digits`` significant digits (a ceiling a model equal to the baseline misses)."""
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return round(math.floor(value / step) * step, max(0, -math.floor(math.log10(step))))


def _params(rows: int) -> tuple[dict[str, int | float], str]:
    """LightGBM's size for the data: small trees and fewer rounds where few rows would be overfitted."""
    small = rows < SMALL_DATA_ROWS
    params = {
        "num_boost_round": 100 if small else 300,
        "learning_rate": 0.05,
        "num_leaves": 7 if small else 31,
        "min_child_samples": min(max(rows // 20, 20), 200),
    }
    return params, (
        f"{params['num_boost_round']} rounds of {params['num_leaves']}-leaf trees, at least "
        f"{params['min_child_samples']} rows a leaf, for {rows:,} labelled rows"
        + (f" (under {SMALL_DATA_ROWS:,}: small trees, so a first model does not learn the noise)" if small else "")
    )


# -- checking and writing ------------------------------------------------------------------------


def _accepted(source: Path, frame: pl.DataFrame, contract: DataContract, time: str) -> pl.DataFrame:
    """The rows as the drafted contract reads them; it must accept every row of the file it was drafted
    from, bar rows without a time."""
    result = check_batch(contract, frame)
    refused = result.quarantined.filter(pl.col(time).is_not_null())
    if refused.height:
        raise InvalidInput(
            f"the drafted contract would quarantine {refused.height:,} rows of {source} (first: "
            f"{refused['reason'][0]}); nothing was written — write the contract by hand or report "
            "this as a bug"
        )
    return result.accepted


def _contract_toml(
    contract: DataContract,
    columns: dict[str, _Column],
    volume: int,
    volume_why: str,
    staleness: str,
    staleness_why: str,
) -> str:
    info = contract.contract
    lines = [
        f"# Data contract drafted by `appliance init --from` on {datetime.now(UTC):%Y-%m-%d}: the "
        "types, ranges and allowed",
        "# values are what the data showed. Read it and edit it: it decides which rows ingest quarantines.",
        "",
        "[contract]",
        f"name = {_str(info.name)}",
        f"version = {_str(info.version)}",
        f"description = {_str(info.description)}",
        f"event_time = {_str(info.event_time)}     # the column freshness and volume are measured on",
    ]
    for rule in contract.fields:
        lines += [
            "",
            f"# {columns[rule.name].why}",
            "[[fields]]",
            f"name = {_str(rule.name)}",
            f"type = {_str(rule.type)}",
            f"nullable = {_bool(rule.nullable)}",
        ]
        if rule.format is not None:
            lines.append(f"format = {_str(rule.format)}")
        if rule.unique:
            lines.append("unique = true")
        if rule.min is not None:
            lines += [f"min = {_num(rule.min)}", f"max = {_num(rule.max)}"]
        if rule.allowed_values is not None:
            lines.append(f"allowed_values = [{', '.join(_value(v) for v in rule.allowed_values)}]")
    lines += [
        "",
        "[freshness]",
        f"max_staleness = {_str(staleness)}",
        _comment(staleness_why),
        "",
        "[volume]",
        f"min_rows_per_day = {volume}",
        _comment(volume_why),
        "",
    ]
    return "\n".join(lines)


def _spec_toml(
    name: str,
    source: Path,
    data_source: str,
    contract: str,
    time: str,
    entity: str | None,
    target: str,
    drafted: _Target,
    features: list[tuple[str, str]],
    eval_days: int,
    eval_why: str,
    params: dict[str, int | float],
    params_why: str,
    gates: dict[str, object],
    max_missing: float,
) -> str:
    description = {
        "binary": f"Probability that {target} is {'positive' if drafted.positive is None else repr(drafted.positive)}",
        "multiclass": f"Which of its {len(drafted.classes or [])} classes {target} is, with each class's probability",
        "regression": f"The value of {target}",
    }[drafted.task]
    lines = [
        f"# Model spec drafted by `appliance init --from {source.name}` on {datetime.now(UTC):%Y-%m-%d}. "
        "Read it and edit it;",
        f"# paths are relative to this file. `appliance train {name}` trains it.",
        "",
        "[model]",
        f"name = {_str(name)}",
        f"description = {_str(f'{description} (drafted from {source.name}).')}",
        "",
        "[data]",
        f"source = {_str(data_source)}",
        f"contract = {_str(contract)}",
        "",
        "[features]",
    ]
    if entity is not None:
        lines.append(f"entity_key = {_str(entity)}   # add aggregations over each entity's history below")
    lines += [f"event_time = {_str(time)}", "request = ["]
    lines += [f"    {{ name = {_str(c)}, type = {_str(t)} }}," for c, t in features]
    lines += ["]", "", "[target]", f"column = {_str(target)}"]
    if drafted.task == "binary" and drafted.positive is not None:
        lines.append(
            f"positive = {_str(drafted.positive)}   # the positive class: the model gives its probability; the "
            "other is the negative"
        )
    if drafted.task == "binary":
        lines.append("threshold = 0.5")
    elif drafted.task == "multiclass":
        lines += [
            'task = "multiclass"',
            _comment(
                "the classes seen, sorted: the order of the model's probabilities (the contract's "
                "allowed_values list the same)"
            ),
            f"classes = [{', '.join(_value(c) for c in drafted.classes)}]",
        ]
    else:
        lines.append('task = "regression"')
    lines += [
        "",
        "[training]",
        'trainer = "lightgbm"',
        f"eval_days = {eval_days}",
        _comment(eval_why),
        "seed = 7",
        "",
        "[training.params]",
        _comment(params_why),
        *(f"{k} = {_num(v)}" for k, v in params.items()),
        "",
        "[validation]",
        _comment(
            "Starting points for a first model, not goals: "
            f"{'lower' if drafted.task == 'regression' else 'raise'} them once you "
            "know what it achieves."
        ),
    ]
    lines += [f"{k} = {_str(v) if isinstance(v, str) else v}" for k, v in gates.items()]
    if max_missing != DEFAULT_MAX_MISSING:
        lines.append(f"max_missing_share = {max_missing}   # a feature is this often null in the drafted-from data")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    return f"# {text}"


def _str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _value(value: object) -> str:
    return _str(value) if isinstance(value, str) else _num(value)


def _num(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _significant(value: float, digits: int = 5) -> float:
    """``value`` to ``digits`` significant digits, for a line a person reads (21.17575725191236: 21.176)."""
    return float(f"{value:.{digits}g}")


def _short(values: list, limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', …' if len(values) > limit else ''}]"

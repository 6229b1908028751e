"""Labelled traffic as a data batch: predictions whose outcomes came back as feedback, shaped by the
model's data contract and ingested like any file, so a retrain learns from the newest labelled rows.

Each batch holds only the outcomes that arrived since the previous batch (its file name carries the
newest outcome's arrival time), so the model's snapshots never hold a labelled row twice.

What a labelled prediction carries, and so what its batch is judged on: the entity key, the event
time (the prediction's arrival when the request left it out), the request-time features and the
outcome as the target (a multiclass model's class, which the log keeps as its index). Those columns
meet every rule of the contract (type, nulls, range, allowed values). A contract column a request
never carries is left null and judged by its type only: a request cannot break a rule about a value
it never had. The one exception is a string unique id, filled with ``REQUEST_ID:POSITION`` so each
labelled row keeps its identity; a unique id of another type stays null rather than be given a number
from the user's own id space. Nor does a feedback batch meet the contract's volume floor: its size is
how many outcomes came back, not an export's.

A batch no row of which is accepted raises ``InvalidInput`` (and writes nothing, so the same
outcomes are offered again once the contract or the requests are fixed): a retrain meant to learn
from them must not pass for one that did.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import polars as pl

from appliance.data.contract import (
    POLARS_TYPES,
    DataContract,
    FieldRule,
    check_batch,
    load_contract,
)
from appliance.data.declared import model_task
from appliance.data.ingest import IngestReport, ingest, ingested_sources
from appliance.data.values import BOOLEAN_TEXT, entity_key, iso, request_time
from appliance.errors import InvalidInput
from appliance.home import Home
from appliance.spec import ModelSpec
from appliance.task import Task
from storage.prediction_log import PredictionStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WHOLE = re.compile(r"\s*[-+]?[0-9]+\s*")
_PYTHON_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool, "timestamp": datetime}


def carried_columns(spec: ModelSpec, contract: DataContract) -> set[str]:
    """The contract columns a labelled prediction carries: entity key, event time, request features, target."""
    keys = spec.features
    carried = {keys.event_time, contract.contract.event_time, spec.target.column, *(f.name for f in keys.request)}
    return carried | ({keys.entity_key} if keys.entity_key is not None else set())


def feedback_contract(spec: ModelSpec, contract: DataContract) -> DataContract:
    """The contract a feedback batch is checked against: every rule for the columns a labelled
    prediction carries (and a string unique id, which it is given); only the type for the others;
    no volume floor."""
    carried = carried_columns(spec, contract)
    fields = [
        rule if rule.name in carried or _is_request_id(rule) else FieldRule(rule.name, rule.type)
        for rule in contract.fields
    ]
    return msgspec.structs.replace(contract, fields=fields, volume=None)


def labelled_batch(home: Home, spec: ModelSpec, since: float = 0.0) -> tuple[pl.DataFrame, float] | None:
    """The model's predictions labelled after ``since`` with the contract's columns, and the newest
    label's arrival time; None when there are none. Values are as the contract check reads them
    (see ``contract_value``); a column the request never carries is null (see the module's rule)."""
    path = home.layout.predictions_db
    if not path.exists():
        return None
    store = PredictionStore(path)
    try:
        rows = store.labelled(spec.name, since)
    finally:
        store.close()
    if not rows:
        return None
    contract = load_contract(spec.resolve(spec.data.contract))
    keys, carried = spec.features, carried_columns(spec, contract)
    task = model_task(spec, contract)
    records = [json.loads(r["features_json"]) for r in rows]
    columns = []
    for rule in contract.fields:
        name = rule.name
        if name == spec.target.column:
            values = [target_value(task, r["outcome"]) for r in rows]
        elif name in (keys.event_time, contract.contract.event_time):
            # a request that left its event time out was scored as of its arrival (so monitoring reads it)
            values = [
                r["predicted_at"] if record.get(keys.event_time) is None else record[keys.event_time]
                for record, r in zip(records, rows)
            ]
        elif name == keys.entity_key:
            values = [_key(record.get(name), rule, name) for record in records]
        elif name in carried:
            values = [record.get(name) for record in records]
        elif _is_request_id(rule):
            values = [f"{r['request_id']}:{r['position']}" for r in rows]
        else:
            values = [None] * len(rows)
        columns.append(_column(name, rule.type, [contract_value(v, rule.type) for v in values]))
    return pl.DataFrame(columns), max(r["received_at"] for r in rows)


def target_value(task: Task, outcome: float) -> object:
    """The target's value of a logged outcome: a multiclass model's class or a text binary target's value (the
    log keeps its index; the contract types it, see ``contract_value``), else the outcome itself (0/1, or the
    observed value). An index outside the classes stays as it is, for the contract check to quarantine its row."""
    named = task.classifier and not task.flags
    if named and float(outcome).is_integer() and 0 <= outcome < len(task.classes):
        return task.classes[int(outcome)]
    return outcome


def contract_value(value: object, contract_type: str) -> object:
    """A value of a logged request, as JSON kept it, in the contract's type; the value as it came when it
    is not one (the contract check then quarantines its row, saying so).

    Times are ISO 8601 text or Unix seconds and keys canonical (``appliance.data.values``, the rules
    every door follows); a number that is whole reads as an integer, 0/1 and true/false are flags, a
    flag in an integer column is 0/1 (a boolean feature reads from an integer 0/1 column), and an
    integer code in a string column is its digits."""
    kind = type(value)
    if value is None or kind is _PYTHON_TYPES[contract_type]:
        return value
    if contract_type == "timestamp":
        try:
            return _EPOCH + timedelta(microseconds=request_time(value, "event time"))
        except (InvalidInput, OverflowError):
            return value
    if contract_type == "integer":
        if kind is bool:
            return int(value)
        if kind is float and value.is_integer():
            return int(value)
        if kind is str and _WHOLE.fullmatch(value):
            return int(value)
    elif contract_type == "float":
        if kind is int or kind is str:
            try:
                return float(value)
            except (OverflowError, ValueError):
                return value
    elif contract_type == "boolean":
        if kind in (int, float) and value in (0, 1):
            return bool(value)
        if kind is str and value.strip().lower() in BOOLEAN_TEXT:
            return BOOLEAN_TEXT[value.strip().lower()]
    elif contract_type == "string":
        if kind is int or (kind is float and value.is_integer()):
            return str(int(value))
    return value


def ingest_feedback(home: Home, spec: ModelSpec) -> IngestReport | None:
    """Ingest the outcomes that arrived since the last batch; None when there are none, InvalidInput
    when the contract accepts none of them (nothing is written: they are offered again next time)."""
    folder = home.layout.feedback
    sources = ingested_sources(home.conn, spec.name, f"{folder}/{spec.name}-%.parquet")
    since = max((float(Path(source).stem.rsplit("-", 1)[1]) for source in sources), default=0.0)
    found = labelled_batch(home, spec, since)
    if found is None:
        return None
    batch, newest = found
    contract = feedback_contract(spec, load_contract(spec.resolve(spec.data.contract)))
    refused = f"{batch.height:,} labelled predictions came back and contract '{contract.contract.name}' accepted none"
    advice = (
        f"nothing was written and they stay in the prediction log: fix the contract or the spec (or resend "
        f"the outcomes), then continue this run with `appliance train {spec.name} --resume` (or retrain again)"
    )
    try:
        result = check_batch(contract, batch)
    except InvalidInput as e:
        raise InvalidInput(f"{refused}: {e}; {advice}") from None
    if result.accepted.height == 0:
        reasons = result.quarantined["reason"].value_counts(sort=True).head(3).rows()
        listed = "; ".join(f"{reason} ({n:,})" for reason, n in reasons)
        raise InvalidInput(f"{refused} ({listed}); {advice}")
    folder.mkdir(exist_ok=True)
    path = folder / f"{spec.name}-{newest!r}.parquet"  # repr: the exact float, read back by float()
    batch.write_parquet(path)
    return ingest(home.conn, home.offline, spec.name, contract, path)


def _is_request_id(rule: FieldRule) -> bool:
    """A contract's unique string id, which a labelled prediction is given (``REQUEST_ID:POSITION``)."""
    return rule.unique and rule.type == "string"


def _key(value: object, rule: FieldRule, name: str) -> object:
    """An entity key as the contract types it, canonical as serving keeps it; as it came if it is not one."""
    try:
        text = entity_key(value, "integer" if rule.type == "integer" else "string", name)
    except InvalidInput:
        return value
    return int(text) if rule.type == "integer" else text


def _column(name: str, contract_type: str, values: list) -> pl.Series:
    """One column of the batch: typed as the contract says when every value is one; otherwise as text,
    which the contract check reads value by value, quarantining the rows whose value does not read."""
    wanted = _PYTHON_TYPES[contract_type]
    if all(v is None or type(v) is wanted for v in values):
        try:
            return pl.Series(name, values, dtype=POLARS_TYPES[contract_type])
        except (OverflowError, TypeError, ValueError, pl.exceptions.PolarsError):
            pass  # an integer beyond 64 bits: let the check say so
    return pl.Series(name, [_as_text(v) for v in values], dtype=pl.String)


def _as_text(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is datetime:
        return iso(value)
    if type(value) in (int, float):
        return repr(value)
    return json.dumps(value)

"""`appliance ingest-log`: another engine's answers, written into the prediction log as the served version's,
so monitoring, alerts, feedback and retraining go on from traffic the appliance no longer serves.

A file of answered requests, one row each, as JSON lines (``.jsonl``, ``.ndjson``), CSV or Parquet. Its
columns:

- ``request_time`` (required): when the engine answered, ISO 8601 text or Unix seconds;
- the request's fields as sent, by the spec's names: the entity key, the event time (optional: the request
  time stands for it, as for a request that sent none), the request features; other columns are not logged;
- the answer, by task: binary ``probability`` (of class 1), or ``probabilities`` [p0, p1] as Triton returns
  them; multiclass ``probabilities``, a list in the task's class order or an object by class (either
  classifier: or a column ``probability_<class>`` per class, as MLflow's table answers); regression
  ``value`` (a number, or a list of one); a list in a CSV cell is its JSON text;
- optional: ``request_id`` (unique; the id feedback names; default: the file's digest and the row's number),
  ``latency_ms`` (default 0), ``version`` (the version that answered; default: production's).

Each row is judged by the rules the API judges a request by (``features.encoding``, ``data.values``, the
event-time horizon): the first bad row is one error naming it, and nothing is written. A file is written
in one transaction; a request id already in the log is refused, so the same file cannot count twice.
The online store is not moved by ingested rows: the engine's side computes the features now.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import msgspec

from appliance.data.sources import read_source
from appliance.data.values import entity_key, json_value, request_time, time_text
from appliance.errors import ApplianceError, Conflict, InvalidInput, NotFound, NotReady
from appliance.export import CLASS_OUTPUT_PREFIX
from appliance.features.encoding import FeatureSchema, RecordEncoder
from appliance.home import Home
from appliance.serving.models import load_version
from appliance.serving.predict import answered
from appliance.serving.prediction_log import logged_fields
from appliance.task import Task
from storage.prediction_log import PredictionStore

JSON_LINES = {".jsonl", ".ndjson"}
ARM = "production"  # the arm ingested rows are filed under: the engine served the version as production
# The log file's own columns (see above); the others are the request's fields.
RESERVED = frozenset({"request_time", "request_id", "latency_ms", "version", "probability", "probabilities", "value"})
_decode_line = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class IngestedLog:
    """What one file added to the log: rows per version, the event times they span, and the file's columns
    that were not logged (neither a declared field nor one of the columns above)."""

    rows: int
    versions: dict[int, int]
    first_event: str
    last_event: str
    unlogged_columns: list[str]


class _Version:
    """One version's checks of a row: its loaded model (its task, its answers' logged columns), the types of
    its request features and its entity key."""

    def __init__(self, home: Home, model: str, number: int):
        self.loaded = load_version(home, model, number)  # NotFound for a version the registry does not have
        schema = msgspec.convert(home.registry.version(model, number).feature_schema, FeatureSchema)
        self.definitions = schema.definitions
        request = {f.name for f in self.definitions.request} if self.definitions is not None else set(schema.names)
        self.encoder = RecordEncoder(FeatureSchema([c for c in schema.columns if c.name in request]))
        self.key = self.definitions.entity_key if self.definitions is not None else None
        self.key_type, self.key_nullable = schema.key_type, schema.key_nullable

    def entity(self, row: dict) -> str | None:
        """The row's entity key as the log keeps it (canonical text); None for a model without one."""
        if self.key is None or (row.get(self.key) is None and self.key_nullable):
            return None
        return entity_key(row.get(self.key), self.key_type, self.key)


@dataclass(frozen=True)
class _Answered:
    """One row, checked: where it goes in the log and what the engine answered."""

    version: int
    request_id: str
    received_at: float
    event_time: str | None
    event_us: float
    entity: str | None
    row: dict
    output: float | list[float]
    latency_ms: float


class _Rows:
    """Judges a file's rows, one at a time, by the rules the API judges a request by."""

    def __init__(self, home: Home, model: str, digest: str, now: float):
        self.home, self.model, self.digest = home, model, digest
        self.spec = home.spec(model)
        self.production = home.registry.alias(model, "production")
        self.earliest, self.latest = (t * 1_000_000 for t in self.spec.data.horizon.bounds(now))
        self.versions: dict[int, _Version] = {}
        self.ids: set[str] = set()

    def check(self, row: dict, number: int) -> _Answered:
        version = self._version(row.get("version"))
        if row.get("request_time") is None:
            raise InvalidInput(
                "no 'request_time': each row needs the time the engine answered (ISO 8601 or Unix seconds)"
            )
        received_us = request_time(row["request_time"], "request_time")
        field = self.spec.features.event_time
        at = row.get(field)
        event_us = received_us if at is None else request_time(at, field)
        if not self.earliest <= event_us <= self.latest:
            raise InvalidInput(
                f"'{field}' {time_text(event_us / 1_000_000)} is outside the event times '{self.model}' takes now "
                f'([data] event_time_past = "{self.spec.data.event_time_past}"); widen it in the spec to ingest '
                "older traffic"
            )
        checks = self.versions[version]
        entity = checks.entity(row)
        checks.encoder.encode([row])  # the request features' types, as the API checks them
        request_id = _request_id(row.get("request_id"), f"{self.digest}-{number}")
        if request_id in self.ids:
            raise InvalidInput(f"request_id {request_id!r} is in the file twice; each answered row has its own")
        self.ids.add(request_id)
        output = _output(row, checks.loaded.task)
        return _Answered(
            version,
            request_id,
            received_us / 1_000_000,
            None if at is None else str(time_text(at)),
            event_us,
            entity,
            row,
            output,
            _latency(row.get("latency_ms")),
        )

    def logged(self) -> frozenset[str]:
        """The request fields a logged row keeps: the spec's and its versions' declared fields, as serving's."""
        served = [v.definitions for v in self.versions.values() if v.definitions is not None]
        return logged_fields([self.spec.features, *served])

    def _version(self, given: object) -> int:
        if given is None:
            if self.production is None:
                raise NotReady(f"'{self.model}' has no production version: give each row its 'version'")
            given = self.production
        if type(given) is float and given.is_integer():
            given = int(given)
        if type(given) is not int:
            raise InvalidInput(f"'version' must be a version number, got {given!r}")
        if given not in self.versions:
            self.versions[given] = _Version(self.home, self.model, given)
        return given


def ingest_log(home: Home, model: str, path: Path, now: float | None = None) -> IngestedLog:
    """Check every row of ``path``, then append them all to the prediction log in one transaction."""
    path = Path(path)
    home.spec(model)  # an unknown model is named before the file is read
    rows = _read_rows(path)
    if not rows:
        raise InvalidInput(f"{path} holds no rows; nothing was written")
    judge = _Rows(home, model, hashlib.sha256(path.read_bytes()).hexdigest()[:12], time.time() if now is None else now)
    answered_rows = []
    for number, row in enumerate(rows, 1):
        try:
            answered_rows.append(judge.check(row, number))
        except ApplianceError as e:
            raise InvalidInput(f"{path.name} row {number}: {e}; nothing was written") from None
    logged = judge.logged()
    store = PredictionStore(home.layout.predictions_db)
    try:
        taken = next((r for r in judge.ids if store.has_request(r)), None)
        if taken is not None:
            raise Conflict(
                f"request_id {taken!r} of {path.name} is already in the prediction log (was this file ingested "
                "before?); nothing was written"
            )
        store.append(_log_rows(model, judge.versions, answered_rows, logged))
    finally:
        store.close()
    events = [a.event_us / 1_000_000 for a in answered_rows]
    versions: dict[int, int] = {}
    for a in answered_rows:
        versions[a.version] = versions.get(a.version, 0) + 1
    columns = {name for row in rows for name in row}
    return IngestedLog(
        len(answered_rows),
        versions,
        str(time_text(min(events))),
        str(time_text(max(events))),
        sorted(c for c in columns - logged - RESERVED if not c.startswith(CLASS_OUTPUT_PREFIX)),
    )


def _log_rows(model: str, versions: dict[int, _Version], rows: list[_Answered], logged: frozenset[str]) -> list[tuple]:
    """The rows in PREDICTION_COLUMNS order, their output columns as the server logs each version's answers."""
    columns: list[tuple] = [()] * len(rows)
    for number, checks in versions.items():
        mine = [i for i, a in enumerate(rows) if a.version == number]
        _, found = answered(checks.loaded, [rows[i].output for i in mine])
        for i, c in zip(mine, found):
            columns[i] = c
    return [
        (
            a.request_id,
            0,
            model,
            a.version,
            ARM,
            None,
            a.received_at,
            a.event_time,
            a.entity,
            _encode({k: v for k, v in a.row.items() if k in logged}).decode(),
            p,
            label,
            a.latency_ms,
            200,
            value,
            probabilities,
        )
        for a, (p, label, value, probabilities) in zip(rows, columns)
    ]


def _read_rows(path: Path) -> list[dict]:
    """The file's rows as the API would have decoded them: JSON values, times as ISO text."""
    if not path.is_file():
        raise NotFound(f"{path} is not a file; pass a .jsonl, .ndjson, .csv or .parquet file of answered requests")
    if path.suffix.lower() not in JSON_LINES:
        frame = read_source(path)
        return [{k: json_value(v) for k, v in row.items()} for row in frame.to_dicts()]
    rows = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = _decode_line(line)
            except msgspec.DecodeError as e:
                raise InvalidInput(f"{path.name} line {number} is not JSON ({e}); nothing was written") from None
            if type(row) is not dict:
                raise InvalidInput(f"{path.name} line {number} is not a JSON object; nothing was written")
            rows.append(row)
    return rows


def _request_id(given: object, default: str) -> str:
    if given is None:
        return default
    if type(given) not in (str, int) or not str(given).strip():
        raise InvalidInput(f"'request_id' must be a non-empty string or an integer, got {given!r}")
    return str(given)


def _latency(given: object) -> float:
    if given is None:
        return 0.0
    if not _number(given) or given < 0:
        raise InvalidInput(f"'latency_ms' must be a number of milliseconds, got {given!r}")
    return float(given)


def _output(row: dict, task: Task) -> float | list[float]:
    """The row's answer as the model's output: binary P(class 1), multiclass each class's probability in the
    task's order, regression the value; InvalidInput naming what is missing or malformed."""
    if task.kind == "regression":
        value = _parsed(row.get("value"))
        if type(value) is list and len(value) == 1:
            value = value[0]
        if not _number(value):
            raise InvalidInput(f"'value' must be the predicted number, got {value!r}")
        return float(value)
    classes = task.class_text()
    given = _parsed(row.get("probabilities"))
    if given is None and all(f"{CLASS_OUTPUT_PREFIX}{c}" in row for c in classes):  # as MLflow's table gives them
        given = [row[f"{CLASS_OUTPUT_PREFIX}{c}"] for c in classes]
    if task.kind == "binary" and given is None:
        given = row.get("probability")
        if not (_number(given) and 0 <= given <= 1):
            raise InvalidInput(f"'probability' must be the probability of class 1, between 0 and 1; got {given!r}")
        return float(given)
    if type(given) is dict:
        given = [given.get(c) for c in classes]
    if type(given) is not list or len(given) != len(classes) or not all(_number(p) and 0 <= p <= 1 for p in given):
        raise InvalidInput(
            f"'probabilities' must be {len(classes)} probabilities, one per class ({', '.join(classes)}), "
            f"as a list in that order or an object by class; got {given!r}"
        )
    return float(given[1]) if task.kind == "binary" else [float(p) for p in given]


def _parsed(value: object) -> object:
    # A list or object in a CSV cell is its JSON text.
    if type(value) is str and value[:1] in ("[", "{"):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return value
    return value


def _number(value: object) -> TypeGuard[int | float]:
    return (type(value) is int or type(value) is float) and math.isfinite(value)  # bool is no number here

"""Live updates of the online store: every request a server answered is an event of its entity, and
the entity's online row moves forward by it, so the next request sees what the offline feature table
would hold over the history plus the answered events.

The prediction log's writer process calls ``OnlineUpdater.apply`` with each batch it wrote, off the
request path; per namespace a served version of the model (or the model's spec) reads, one
transaction merges the batch's events into the entities' tails and rewrites their rows, in SQL.
The server builds each namespace's ``UpdateTarget`` (``features.online.update_targets``, from the
feature definitions, with polars and DuckDB at hand); the writer gets plain data and imports neither.

A namespace materialized before tails existed has none to move forward from: its rows are left as
they are (the events counted as ``stale``) until the next materialization. An event time further past the
answer's time than ``FUTURE_SKEW_US`` is a client's clock or bug, not an event: applied, it would carry the
row into the future, every real event after it would be old, and the row would say what that one event
says until its windows pass. Such events are skipped (counted as ``future``).
A materialization keeps the events an entity's tail holds past its newest ingested one, read in the
transaction that writes the new rows: one applied while it computed them is kept, one applied after
moves the new row forward (``OnlineStore.replace``).
"""

from __future__ import annotations

import logging
import math

import msgspec

from appliance.data.values import request_time
from appliance.errors import InvalidInput
from storage.online_store import OnlineStore

log = logging.getLogger(__name__)

# Positions in a prediction log row (storage.prediction_log.PREDICTION_COLUMNS).
_MODEL, _RECEIVED_AT, _ENTITY, _RECORD, _STATUS = 2, 6, 8, 9, 13
FUTURE_SKEW_US = 10 * 60 * 1_000_000  # how far a client's clock may run ahead of the server's


class UpdateTarget(msgspec.Struct, frozen=True):
    """One namespace to move forward: how to read an event from a request record, and the SQL that
    rewrites an entity's row from its tail (``features.tail.TailPlan``)."""

    namespace: str
    time_field: str
    columns: list[str]  # the aggregated columns, in tail order (col 1, 2, …; col 0 is the count)
    horizon: int  # how far before its newest event an entity's row looks, in µs
    rows_sql: str

    def event_time(self, record: dict, answered_at: int) -> int | None:
        """A request's event time in epoch µs (the answer's if it sent none); None if it has no readable one."""
        when = record.get(self.time_field)
        if when is None:  # served as happening now: the server's clock at the answer
            return answered_at
        try:
            return int(request_time(when, self.time_field, ""))
        except InvalidInput:  # not answered with 200, then; nothing to learn from it
            return None

    def points(self, entity: str, record: dict, at: int) -> list[tuple]:
        """The ``tail_points`` rows of a request's event at ``at``: the count, then one per aggregated
        column (its value, or a zero count when the request lacks it)."""
        name = self.namespace
        points = [(name, entity, at, 0, 1, None, None, None)]
        for i, column in enumerate(self.columns, 1):  # a loop: twice as fast as a generator
            v = _value(record.get(column))
            points.append(
                (name, entity, at, i, 1, v, v, v) if v is not None else (name, entity, at, i, 0, None, None, None)
            )
        return points


class OnlineUpdater:
    """Applies answered requests to the online store; counts what it wrote, skipped and lost."""

    def __init__(self, store: OnlineStore):
        self.store = store
        self.updated = 0  # online rows written
        self.stale = 0  # events of namespaces materialized before tails (see the module doc)
        self.future = 0  # events dated past the answer by more than FUTURE_SKEW_US, skipped
        self.errors = 0  # events lost to a failed update
        self._targets: dict[str, list[UpdateTarget]] = {}
        self._materialized: set[str] = set()
        self._warned: set[tuple[str, str]] = set()  # (what, namespace) warned of once

    def follow(self, targets: dict[str, list[UpdateTarget]]) -> None:
        """Set the namespaces each model's answered requests update (``features.online.update_targets``)."""
        self._targets = dict(targets)  # one assignment: a writer on another thread reads it without a lock

    def apply(self, rows: list[tuple]) -> int:
        """Move forward the rows of the entities of these prediction log rows (PREDICTION_COLUMNS
        order, the request record as a dict); only answered ones (status 200) count. Returns rows written."""
        targets = self._targets
        changes: dict[str, tuple[UpdateTarget, list, dict]] = {}  # namespace -> (target, tail points, entities)
        for row in rows:
            entity = row[_ENTITY]
            if row[_STATUS] != 200 or entity is None:
                continue
            answered_at = round(row[_RECEIVED_AT] * 1_000_000)
            for target in targets.get(row[_MODEL], ()):
                at = target.event_time(row[_RECORD], answered_at)
                if at is None:
                    continue
                if at > answered_at + FUTURE_SKEW_US:
                    self._skip_future(target.namespace)
                    continue
                change = changes.get(target.namespace)
                if change is None:
                    change = changes[target.namespace] = (target, [], {})
                change[1].extend(target.points(entity, row[_RECORD], at))
                change[2][entity] = None
        written = 0
        for name, (target, points, entities) in changes.items():
            tails = self._tails(name)
            if tails is None:  # never materialized: its rows would make a server answer what should be NotReady
                continue
            events = len(points) // (1 + len(target.columns))
            if not tails:
                self.stale += events
                if ("stale", name) not in self._warned:
                    self._warned.add(("stale", name))
                    log.warning(
                        "online rows of %s were materialized before tails and stay as they are; run "
                        "`appliance features materialize %s` to keep them current",
                        name,
                        name.split(":")[0],
                    )
                continue
            try:
                written += self.store.advance(name, points, list(entities), target.horizon, target.rows_sql)
            except Exception:  # a locked or full disk must not stop the prediction log; count what is lost
                self.errors += events
                log.exception("could not update the online store with %d answered requests", events)
        self.updated += written
        return written

    def _skip_future(self, name: str) -> None:
        self.future += 1
        if ("future", name) not in self._warned:
            self._warned.add(("future", name))
            log.warning(
                "a request to %s dated more than %d minutes past the server's clock did not move its "
                "entity's online row; check the clients' clocks (later ones are counted in "
                "appliance_online_future_events_total)",
                name.split(":")[0],
                FUTURE_SKEW_US // 60_000_000,
            )

    def _tails(self, name: str) -> bool | None:
        # Whether a namespace was materialized with tails (None: never materialized); once it was, it stays so.
        if name not in self._materialized:
            found = self.store.materialization(name)
            if found is None or not found["tails"]:
                return None if found is None else False
            self._materialized.add(name)
        return True


def _value(value: object) -> float | None:
    # The offline table casts a column to DOUBLE; a request answered with 200 carries numbers here.
    if type(value) in (int, float, bool):
        number = float(value)
        return None if math.isnan(number) else number
    return None

"""Live updates of the online store: every request a server answered is an event of its entity, and
the entity's online row moves forward by it, so the next request sees what the offline feature table
would hold over the history plus the answered events.

The prediction log's writer thread calls ``OnlineUpdater.apply`` with each batch it wrote, off the
request path; one transaction per batch updates the touched entities in every namespace a served
version of the model (and the model's spec) reads. A row materialized before tails existed has no
tail to move forward from: it is left as it is (counted as ``stale``) until the next materialization.
Events answered after a materialization read the history and before it committed are not in its rows.
"""

from __future__ import annotations

import logging
import math

import msgspec

from appliance.errors import InvalidInput
from appliance.features.online import namespace, request_time
from appliance.features.tail import EMPTY, TailPlan, decode, encode
from appliance.spec import FeaturesSection
from storage.online_store import OnlineStore

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# Positions in a prediction log row (storage.prediction_log.PREDICTION_COLUMNS).
_MODEL, _RECEIVED_AT, _ENTITY, _RECORD, _STATUS = 2, 6, 8, 9, 13


class _Target:
    """One namespace to move forward, and how to read an event from a request record."""

    def __init__(self, name: str, features: FeaturesSection):
        self.namespace = name
        self.plan = TailPlan(features)
        self.time_field = features.event_time

    def event(self, record: dict, received_at: float) -> tuple[int, list[float | None]] | None:
        when = record.get(self.time_field)
        if when is None:  # served as happening now: the server's clock at the answer
            at = round(received_at * 1_000_000)
        else:
            try:
                at = int(request_time(when, self.time_field, ""))
            except InvalidInput:  # not answered with 200, then; nothing to learn from it
                return None
        return at, [_value(record.get(c)) for c in self.plan.columns]


class OnlineUpdater:
    """Applies answered requests to the online store; counts what it wrote, skipped and lost."""

    def __init__(self, store: OnlineStore):
        self.store = store
        self.updated = 0        # online rows written
        self.stale = 0          # events of entities whose row has no tail yet (see the module doc)
        self.errors = 0         # events lost to a failed update
        self._targets: dict[str, list[_Target]] = {}
        self._materialized: set[str] = set()
        self._warned: set[str] = set()

    def follow(self, definitions: dict[str, list[FeaturesSection]]) -> None:
        """Set the feature definitions each model's answered requests update (one namespace each)."""
        known = {t.namespace: t for targets in self._targets.values() for t in targets}
        targets = {}
        for model, sections in definitions.items():
            chosen: dict[str, _Target] = {}
            for features in sections:
                name = namespace(model, features)
                if name not in chosen:
                    chosen[name] = known.get(name) or _Target(name, features)
            targets[model] = list(chosen.values())
        self._targets = targets  # one assignment: the writer thread reads it without a lock

    def apply(self, rows: list[tuple]) -> int:
        """Move forward the rows of the entities of these prediction log rows (PREDICTION_COLUMNS
        order, the request record as a dict); only answered ones (status 200) count. Returns rows written."""
        targets = self._targets
        events: dict[str, dict[str, list]] = {}  # namespace -> entity -> [(time, values)]
        by_name = {}
        for row in rows:
            entity = row[_ENTITY]
            if row[_STATUS] != 200 or entity is None:
                continue
            for target in targets.get(row[_MODEL], ()):
                if not self._is_materialized(target.namespace):
                    continue
                event = target.event(row[_RECORD], row[_RECEIVED_AT])
                if event is not None:
                    by_name[target.namespace] = target
                    events.setdefault(target.namespace, {}).setdefault(entity, []).append(event)
        if not events:
            return 0

        def step(name: str, entity: str, current: tuple | None) -> tuple | None:
            news = events[name][entity]
            _, payload, tail = current if current is not None else (None, b"{}", EMPTY)
            if tail is None:
                self.stale += len(news)
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("online rows of %s predate tails and stay as materialized; run `appliance "
                                "features materialize %s` to keep them current", name, name.split(":")[0])
                return None
            plan = by_name[name].plan
            points = plan.add(decode(tail), news)
            values = _decode(payload)
            values.update(plan.aggregate(points))
            return points[-1][0], _encode(values), encode(points)

        try:
            written = self.store.update({name: list(entities) for name, entities in events.items()}, step)
        except Exception:  # a locked or full disk must not stop the prediction log; count what is lost
            self.errors += sum(len(e) for es in events.values() for e in es.values())
            log.exception("could not update the online store with %d answered requests", len(rows))
            return 0
        self.updated += written
        return written

    def _is_materialized(self, name: str) -> bool:
        # Rows of a namespace never materialized would make a server answer that should say NotReady.
        if name not in self._materialized and self.store.materialization(name) is not None:
            self._materialized.add(name)
        return name in self._materialized


def _value(value: object) -> float | None:
    # The offline table casts a column to DOUBLE; a request answered with 200 carries numbers here.
    if type(value) in (int, float, bool):
        number = float(value)
        return None if math.isnan(number) else number
    return None

"""The prediction log's writer process: appends the batches a server hands it to predictions.db and
moves the online store forward by them.

It is a process of its own, not a thread of the server, because a thread shares the server's GIL:
each time the event loop released it (a socket write, an ONNX Runtime call, an SQLite read), the
writer's Python took it, and the loop waited to get it back: on 2 cores at c=8 the loop spent
~60 µs more CPU per request with the writer thread beside it, and the full path went from
0.54–0.57× a bare endpoint's throughput to 0.68–0.89× with this process (``scripts/bench/serve.py``,
without and with micro-batching).

It speaks a small protocol over a ``multiprocessing`` connection (pickled messages), each answered by
one ``Ack``: ``Batch`` (rows to write), ``Follow`` (the online store namespaces each model's answered
requests update, as plain ``UpdateTarget`` data) and ``Refused`` (rows the full queue refused, per
model). It imports SQLite and msgspec only (about 20 MiB). It ignores SIGINT and SIGTERM, which a
terminal or systemd send to the whole process group: the server decides when the log is closed, and
the writer stops when its connection closes, after the message in hand.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec

from appliance.features.online_updates import OnlineUpdater, UpdateTarget
from appliance.processes import unblock_stops
from storage.online_store import OnlineStore
from storage.prediction_log import PREDICTION_COLUMNS, PredictionStore

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_STATUS = PREDICTION_COLUMNS.index("status")
ATTEMPTS = 3  # tries of one batch's append before its rows count as lost (a locked or full disk)


@dataclass
class Batch:
    """Prediction rows (PREDICTION_COLUMNS order, the request record as a dict) and shadow score rows.
    ``resent``: a writer died with it in hand, so its append may have committed already."""

    predictions: list[tuple]
    shadow: list[tuple]
    resent: bool = False


@dataclass
class Follow:
    """The namespaces each model's answered requests update (``OnlineUpdater.follow``)."""

    targets: dict[str, list[UpdateTarget]]


@dataclass
class Refused:
    """Rows the server's full queue refused, per model ("*" for shadow rows)."""

    counts: Counter


@dataclass
class Ack:
    """What the writer did with one message; the counts are this message's, not running totals."""

    written: int = 0
    write_errors: int = 0
    online_updated: int = 0
    online_stale: int = 0
    online_future: int = 0
    online_errors: int = 0
    recorded: bool = True  # a Refused message: whether its counts were stored
    logged: list[tuple[int, str]] = field(default_factory=list)  # (level, text) of the writer's log records


def run_writer(conn: Connection, predictions_path: Path, online_path: Path | None) -> None:
    """The writer process's main loop: one message in, one ``Ack`` out, until the server closes the connection."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it stops when the server closes the connection, having
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # written what it was handed
    unblock_stops()
    records = _Forwarded()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.INFO)
    writer = LogWriter(
        PredictionStore(predictions_path), OnlineUpdater(OnlineStore(online_path)) if online_path is not None else None
    )
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the server closed the log, or is gone
                return
            try:
                ack = writer.handle(message)
            except Exception:  # a message it cannot handle would kill every writer it is resent to: count it lost
                log.exception("the prediction log's writer could not handle a message")
                ack = _lost(message)
            ack.logged = records.take()
            conn.send(ack)
    finally:
        writer.close()


class _Forwarded(logging.Handler):
    """Keeps the writer's log records for the next ``Ack``: the server logs them where it logs its own."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, self.format(record)))

    def take(self) -> list[tuple[int, str]]:
        taken, self.records = self.records, []
        return taken


class LogWriter:
    """Handles the messages of one writer process: appends batches, and moves the online store forward
    by their answered requests when it has an updater."""

    def __init__(self, store: PredictionStore, updater: OnlineUpdater | None):
        self.store = store
        self.updater = updater

    def handle(self, message: Batch | Follow | Refused) -> Ack:
        """Carry out one message; what was done, in counts."""
        ack = Ack()
        if isinstance(message, Batch):
            self._write(message, ack)
        elif isinstance(message, Follow):
            if self.updater is not None:
                self.updater.follow(message.targets)
        else:
            try:
                self.store.record_overflow(message.counts)
            except Exception:  # the server keeps the counts for its next try
                ack.recorded = False
                log.exception("could not record %d refused prediction log rows", sum(message.counts.values()))
        return ack

    def _write(self, batch: Batch, ack: Ack) -> None:
        rows = batch.predictions
        predictions = [(*row[:9], _encode(row[9]).decode(), *row[10:]) for row in rows]
        if batch.resent and self._committed(batch):
            # Written before the last writer died, and maybe applied to the online store too: applying it
            # again would count its events twice, so they are counted as lost to the online store instead.
            ack.written = len(predictions)
            if self.updater is not None:
                ack.online_errors = sum(1 for row in rows if row[_STATUS] == 200)
            log.warning(
                "a resent batch of %d prediction rows was already written; its events are not applied "
                "to the online store again",
                len(rows),
            )
            return
        for attempt in range(ATTEMPTS):
            try:
                self.store.append(predictions, batch.shadow)
                ack.written = len(predictions)
                break
            except Exception:  # a locked or full disk must not stop the writer; count what is lost
                if attempt == ATTEMPTS - 1:
                    ack.write_errors = len(predictions) + len(batch.shadow)
                    log.exception("could not write %d prediction log rows", ack.write_errors)
                else:
                    time.sleep(0.1)
        if self.updater is not None and rows:
            before = (self.updater.updated, self.updater.stale, self.updater.future, self.updater.errors)
            try:
                self.updater.apply(rows)
            except Exception:  # the updater's failure must not stop the log
                log.exception("the online store's updater failed on %d rows", len(rows))
            ack.online_updated = self.updater.updated - before[0]
            ack.online_stale = self.updater.stale - before[1]
            ack.online_future = self.updater.future - before[2]
            ack.online_errors = self.updater.errors - before[3]

    def _committed(self, batch: Batch) -> bool:
        # A batch is appended in one transaction: its first row tells whether all of it is there.
        if batch.predictions:
            request_id, position = batch.predictions[0][:2]
            return self.store.has_row(request_id, position)
        if batch.shadow:
            request_id, position = batch.shadow[0][:2]
            return self.store.has_row(request_id, position, shadow=True)
        return False

    def close(self) -> None:
        """Close the databases."""
        self.store.close()
        if self.updater is not None:
            self.updater.store.close()


def _lost(message: object) -> Ack:
    # The Ack of a message whose handling failed: a batch's rows count as lost to write errors.
    if isinstance(message, Batch):
        return Ack(write_errors=len(message.predictions) + len(message.shadow))
    return Ack()

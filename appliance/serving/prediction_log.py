"""The asynchronous prediction log: a bounded queue the request path drops rows into, and a thread
that hands them in batches to the log's writer process (``log_writer``), which appends them to
predictions.db and moves the online store forward by them.

A full queue never blocks a request: the row is counted as overflow (exposed at /metrics, logged
as an error, and recorded per model in predictions.db, where the monitor job reads it for its
alert). Closing the log writes everything still queued — the server closes it on SIGTERM. A writer
process that dies is started again and given the batch it had in hand.

The queue is a deque, not a ``queue.Queue``: appending is one atomic operation with no lock or
wake-up on the request path, and the thread, which batches anyway, looks every ``linger_s``. The
thread holds the GIL only to pop and pickle a batch (~1.5 µs a row); it waits for the writer's
answer with the GIL released, so the server's event loop runs on while the rows are written.

A row keeps the fields of its request that the spec declares (``logged_fields``), not whatever else a
client sent: an extra field is never stored, so none can grow the log, clash with a column monitoring
adds (``_score``), or change type from one request to the next under a job that reads the log.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import threading
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path

from appliance.processes import start_shielded
from appliance.serving.log_writer import Ack, Batch, Follow, Refused, run_writer
from appliance.spec import FeaturesSection
from storage.prediction_log import PredictionStore

log = logging.getLogger(__name__)

CAPACITY = 100_000
HIGH_WATER = 5_000  # queued rows beyond which the request path waits for the writer (backpressure: serving.predict)
BATCH_ROWS = 2_000
LINGER_S = 0.05  # how often the thread looks: one commit per batch, not one per request
RESTARTS = 3  # writer processes started for one batch before its rows count as lost


def logged_fields(definitions: Iterable[FeaturesSection]) -> frozenset[str]:
    """The request fields a prediction row keeps, of these feature definitions (the spec's and its served
    versions'): the entity key, the event time, the request features (whose types the model checked before
    it answered) and the columns the online store's aggregations read (the log's writer moves each
    answered request's entity forward by them)."""
    fields: set[str] = set()
    for features in definitions:
        fields.add(features.event_time)
        if features.entity_key is not None:
            fields.add(features.entity_key)
        fields.update(f.name for f in features.request)
        fields.update(a.column for a in features.aggregations if a.column is not None)
    return frozenset(fields)


class PredictionLog:
    """Rows in, batches out; ``overflow`` counts rows the full queue refused.

    ``online``: the online store the writer moves forward by answered requests (see ``follow``);
    None writes the log alone."""

    def __init__(
        self,
        path: Path,
        capacity: int = CAPACITY,
        batch_rows: int = BATCH_ROWS,
        linger_s: float = LINGER_S,
        online: Path | None = None,
        high_water: int = HIGH_WATER,
    ):
        self.path = Path(path)
        self.online = None if online is None else Path(online)
        self.capacity = capacity
        self.high_water = high_water
        self.batch_rows = batch_rows
        self.linger_s = linger_s
        self.overflow = 0
        self.write_errors = 0
        self.written = 0
        self.online_updated = 0  # online rows the writer moved forward
        self.online_stale = 0  # events of namespaces materialized before tails (features.online_updates)
        self.online_future = 0  # events dated past the server's clock, not applied (features.online_updates)
        self.online_errors = 0  # events lost to a failed online update
        self.writer_restarts = 0
        self._refused: Counter[str] = Counter()  # per model, not yet recorded in predictions.db
        self._refused_lock = threading.Lock()
        self._follow: Follow | None = None  # the targets a writer last took: a restarted one is given them
        self._rows: deque = deque()
        self._enqueued = 0
        self._processed = 0
        self._progress = threading.Condition()
        self._stop = threading.Event()
        self._closing = threading.Lock()
        self._closed = False
        PredictionStore(self.path).close()  # create and migrate before the first request
        self._start_writer()  # sets _writer and _conn
        self._thread = threading.Thread(target=self._hand_over_forever, name="prediction-log", daemon=True)
        self._thread.start()
        # A server whose shutdown never ran (a second Ctrl-C makes uvicorn skip the app's) still writes what is
        # queued and stops its writer when the interpreter exits: this runs before multiprocessing's own exit
        # handler, which would otherwise wait forever to join a writer that ignores signals.
        atexit.register(self.close)

    @property
    def depth(self) -> int:
        return len(self._rows)

    @property
    def processed(self) -> int:
        """Rows the writer has finished with so far (written or counted as lost): its progress."""
        return self._processed

    @property
    def writer_pid(self) -> int:
        """The process id of the writer process now running."""
        pid = self._writer.pid
        assert pid is not None, "the writer process is started with the log, and again whenever it dies"
        return pid

    def record(self, row: tuple) -> None:
        """Queue one prediction row (PREDICTION_COLUMNS order, features as a dict); never blocks."""
        self._put((True, row))

    def record_shadow(self, row: tuple) -> None:
        """Queue one shadow score row (SHADOW_COLUMNS order); never blocks."""
        self._put((False, row))

    def follow(self, targets: dict[str, list]) -> None:
        """Set the online store namespaces each model's answered requests update
        (``OnlineUpdater.follow``); they apply to the rows queued after this call."""
        self._put((None, Follow(targets)))

    def _put(self, item: tuple) -> None:
        if len(self._rows) >= self.capacity and item[0] is not None:
            is_prediction, row = item
            with self._refused_lock:
                self.overflow += 1
                self._refused[row[2] if is_prediction else "*"] += 1
            if self.overflow == 1 or self.overflow % 10_000 == 0:
                log.error(
                    "prediction log queue is full (%d rows): %d rows not logged so far", self.capacity, self.overflow
                )
            return
        self._rows.append(item)
        self._enqueued += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued before this call is written; False on timeout."""
        target = self._enqueued
        with self._progress:
            return self._progress.wait_for(lambda: self._processed >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread and the writer process; a second call (the app's shutdown
        and the exit handler both close) waits for the first and returns."""
        with self._closing:
            if self._closed:
                return
            self._stop.set()
            self._thread.join(timeout)
            self._conn.close()  # the writer stops when its connection closes
            self._writer.join(timeout)
            self._closed = True
        atexit.unregister(self.close)

    def _start_writer(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork: the server holds threads and open databases
        ours, theirs = context.Pipe()
        writer = context.Process(
            target=run_writer, args=(theirs, self.path, self.online), name="prediction-log-writer", daemon=True
        )
        start_shielded(writer)  # a terminal's Ctrl-C cannot kill it half-started; it stops when the log closes
        theirs.close()  # so that our end sees the writer's exit as the end of the connection
        self._conn, self._writer = ours, writer

    def _hand_over_forever(self) -> None:
        rows = self._rows
        while True:
            stopping = self._stop.wait(self.linger_s)
            while rows:
                batch = [rows.popleft() for _ in range(min(len(rows), self.batch_rows))]
                self._hand_over(batch)
            self._record_refused()
            if stopping:
                return

    def _hand_over(self, items: list[tuple]) -> None:
        # Follow messages keep their place among the rows: rows queued before one are updated by the old
        # targets, the ones after it by the new.
        start = 0
        for i, (kind, payload) in enumerate(items):
            if kind is None:
                self._write(items[start:i])
                self._send(payload)
                start = i + 1
        self._write(items[start:])
        with self._progress:
            self._processed += len(items)
            self._progress.notify_all()

    def _write(self, items: list[tuple]) -> None:
        if not items:
            return
        batch = Batch(
            [row for is_prediction, row in items if is_prediction],
            [row for is_prediction, row in items if not is_prediction],
        )
        ack = self._send(batch)
        if ack is None:
            self.write_errors += len(items)
            log.error(
                "lost %d prediction log rows: writer processes died %d times writing them", len(items), RESTARTS + 1
            )
            return
        self.written += ack.written
        self.write_errors += ack.write_errors
        self.online_updated += ack.online_updated
        self.online_stale += ack.online_stale
        self.online_future += ack.online_future
        self.online_errors += ack.online_errors

    def _send(self, message: Batch | Follow | Refused) -> Ack | None:
        """The writer's answer to a message; a writer that dies on it is started again and given it
        again (marked resent, for a batch); None after RESTARTS deaths."""
        for attempt in range(RESTARTS + 1):
            try:
                self._conn.send(message)
                ack: Ack = self._conn.recv()
            except (EOFError, OSError):
                self._writer.join(5)
                log.error(
                    "the prediction log's writer process (pid %s) died (exit code %s); starting another",
                    self._writer.pid,
                    self._writer.exitcode,
                )
                if attempt == RESTARTS:
                    return None
                self._conn.close()
                self._start_writer()
                self.writer_restarts += 1
                if self._follow is not None and message is not self._follow:
                    self._send(self._follow)  # the new writer's updater follows what the old one did
                if isinstance(message, Batch):
                    message.resent = True
                continue
            if isinstance(message, Follow):
                self._follow = message
            for level, text in ack.logged:
                log.log(level, "%s", text)
            return ack
        return None

    def _record_refused(self) -> None:
        # The queue refuses rows only while it is full, so the writer is busy then and records them
        # within a batch or two.
        with self._refused_lock:
            refused, self._refused = self._refused, Counter()
        if not refused:
            return
        ack = self._send(Refused(refused))
        if ack is None or not ack.recorded:  # keep the count for the next try rather than lose it
            with self._refused_lock:
                self._refused.update(refused)

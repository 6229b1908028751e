"""The asynchronous prediction log: a bounded queue the request path drops rows into, and one
writer thread that appends them to predictions.db in batches.

A full queue never blocks a request: the row is counted as overflow (exposed at /metrics, logged
as an error, and recorded per model in predictions.db, where the monitor job reads it for its
alert). Closing the log writes everything still queued — the server closes it on SIGTERM. A ``follower``
(the online store's updater) gets every batch of prediction rows after it is written.

The queue is a deque, not a ``queue.Queue``: appending is one atomic operation with no lock or
wake-up on the request path, and the writer, which batches anyway, looks every ``linger_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from storage.prediction_log import PredictionStore

log = logging.getLogger(__name__)

PREDICTIONS_DB = "predictions.db"  # under the data directory
CAPACITY = 100_000
HIGH_WATER = 5_000  # queued rows beyond which the request path waits for the writer (backpressure: serving.predict)
BATCH_ROWS = 2_000
LINGER_S = 0.05  # how often the writer looks: one commit per batch, not one per request
_encode = msgspec.json.Encoder().encode


class PredictionLog:
    """Rows in, batches out; ``overflow`` counts rows the full queue refused."""

    def __init__(self, path: Path, capacity: int = CAPACITY, batch_rows: int = BATCH_ROWS,
                 linger_s: float = LINGER_S, follower: Callable[[list[tuple]], object] | None = None,
                 high_water: int = HIGH_WATER):
        self.path = Path(path)
        self.follower = follower  # also given each batch of prediction rows, on the writer thread
        self.capacity = capacity
        self.high_water = high_water
        self.batch_rows = batch_rows
        self.linger_s = linger_s
        self.overflow = 0
        self._refused: Counter[str] = Counter()  # per model, not yet recorded in predictions.db
        self._refused_lock = threading.Lock()
        self.write_errors = 0
        self.written = 0
        self._rows: deque = deque()
        self._enqueued = 0
        self._processed = 0
        self._progress = threading.Condition()
        self._stop = threading.Event()
        PredictionStore(self.path).close()  # create and migrate before the first request
        self._thread = threading.Thread(target=self._write_forever, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._rows)

    @property
    def processed(self) -> int:
        """Rows the writer has finished with so far (written or counted as lost): its progress."""
        return self._processed

    def record(self, row: tuple) -> None:
        """Queue one prediction row (PREDICTION_COLUMNS order, features as a dict); never blocks."""
        self._put((True, row))

    def record_shadow(self, row: tuple) -> None:
        """Queue one shadow score row (SHADOW_COLUMNS order); never blocks."""
        self._put((False, row))

    def _put(self, item: tuple) -> None:
        if len(self._rows) >= self.capacity:
            is_prediction, row = item
            with self._refused_lock:
                self.overflow += 1
                self._refused[row[2] if is_prediction else "*"] += 1
            if self.overflow == 1 or self.overflow % 10_000 == 0:
                log.error("prediction log queue is full (%d rows): %d rows not logged so far", self.capacity,
                          self.overflow)
            return
        self._rows.append(item)
        self._enqueued += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued before this call is written; False on timeout."""
        target = self._enqueued
        with self._progress:
            return self._progress.wait_for(lambda: self._processed >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer."""
        self._stop.set()
        self._thread.join(timeout)

    def _write_forever(self) -> None:
        store = PredictionStore(self.path)
        rows = self._rows
        try:
            while True:
                stopping = self._stop.wait(self.linger_s)
                while rows:
                    batch = [rows.popleft() for _ in range(min(len(rows), self.batch_rows))]
                    self._write(store, batch)
                self._record_refused(store)
                if stopping:
                    return
        finally:
            store.close()

    def _record_refused(self, store: PredictionStore) -> None:
        # The queue refuses rows only while it is full, so the writer is busy then and records them
        # within a batch or two.
        with self._refused_lock:
            refused, self._refused = self._refused, Counter()
        if not refused:
            return
        try:
            store.record_overflow(refused)
        except Exception:  # keep the count for the next try rather than lose it
            log.exception("could not record %d refused prediction log rows", sum(refused.values()))
            with self._refused_lock:
                self._refused.update(refused)

    def _write(self, store: PredictionStore, items: list[tuple]) -> None:
        rows = [row for is_prediction, row in items if is_prediction]
        predictions = [(*row[:9], _encode(row[9]).decode(), *row[10:]) for row in rows]
        shadow = [row for is_prediction, row in items if not is_prediction]
        for attempt in range(3):
            try:
                store.append(predictions, shadow)
                self.written += len(predictions)
                break
            except Exception:  # a locked or full disk must not kill the writer; count what is lost
                if attempt == 2:
                    self.write_errors += len(items)
                    log.exception("could not write %d prediction log rows", len(items))
                else:
                    time.sleep(0.1)
        if self.follower is not None and rows:
            try:  # before the rows count as processed: flush() waits for it too
                self.follower(rows)
            except Exception:  # the follower's failure must not stop the log
                log.exception("the prediction log's follower failed on %d rows", len(rows))
        with self._progress:
            self._processed += len(items)
            self._progress.notify_all()

"""Micro-batching: concurrent single-row requests share one encoding and one ONNX Runtime call.

The requests a turn of the event loop brings (those whose bytes came in the same poll) are
completed from the online store, encoded and scored together at the start of the next turn: one
online store query and one vectorized encoding for the batch cost less per row than one each
(``scripts/bench/complete.py``). A record that cannot be encoded fails alone (``NotEncoded``); the
others are scored. A row that arrives alone, after a turn that brought this model at most one row,
is scored at once: at low concurrency nothing waits. A row waits longer only while other requests
are on their way in (``Arrivals``: bodies still being read), at most ``max_wait``, or until
``max_batch`` rows are pending (the spec's ``max_batch``; its ``gpu_max_batch`` for a model the CUDA
provider serves, where a batch of hundreds of rows costs about what one does: ``LoadedModel.max_batch``).
A body that has not come within a whole ``max_wait`` is late: no row
waits for it again (a client that stalls its body, or a flood of them, would otherwise make every
single-row request wait its ``max_wait``); it counts again once it has come or its connection ended.
The work runs on the event loop's thread: a tree ensemble scores a batch in tens of microseconds,
less than a hop to a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


class NotEncoded(Exception):
    """A record the model could not complete or encode; ``cause`` says why (often the caller's error)."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause
        self.__cause__ = cause  # a logged traceback shows where the encoding failed


class Arrivals:
    """Requests that have entered a predict handler and not yet reached a batcher (``count``, kept by
    the predict endpoint), and how many of those are late (``late``: still out after a batch waited a
    whole ``max_wait`` for them)."""

    __slots__ = ("count", "late")

    def __init__(self) -> None:
        self.count = 0
        self.late = 0

    def expected(self) -> bool:
        """Whether a body is on its way that has not proved late."""
        if self.late > self.count:  # late ones came, or their connections ended
            self.late = self.count
        return self.count > self.late


class MicroBatcher:
    """Coalesces single records for one loaded model into one call of ``encode`` and one of ``run``."""

    def __init__(
        self,
        encode: Callable[[list], np.ndarray],
        run: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        arrivals: Arrivals,
        on_batch: Callable[[int], None] = lambda n: None,
    ):
        self._encode = encode
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._arrivals = arrivals
        self._on_batch = on_batch
        self._records: list = []  # request records waiting
        self._waiting: list[asyncio.Future] = []
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False
        self._turn_rows = 0  # rows scored in this turn of the loop so far
        self._alone = True  # the last turn brought at most one row

    def score(self, record: object) -> asyncio.Future:
        """A future for the model's output of one request record (a row of ``run``'s: a probability, a list
        of class probabilities, or a value); its exception is ``NotEncoded`` if the record could not be
        encoded, else the scoring's."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.max_batch > 1:
            self._turn_rows += 1
            if self._turn_rows == 1:
                loop.call_soon(self._end_turn)
        if self.max_batch == 1 or (
            self._alone and self._turn_rows == 1 and not self._records and not self._arrivals.expected()
        ):
            # batching is off, or this row has no company in sight: score now, no turn to wait for
            self._records, self._waiting = [record], [future]
            self._flush()
            return future
        self._records.append(record)
        self._waiting.append(future)
        if len(self._records) >= self.max_batch or not self._arrivals.expected() or self.max_wait_s == 0:
            if not self._soon:
                self._soon = True
                loop.call_soon(self._flush)
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._waited)
        return future

    def _waited(self) -> None:
        # A whole max_wait went by: the bodies still on their way are late, and no row waits for them again.
        self._arrivals.late = self._arrivals.count
        self._flush()

    def _end_turn(self) -> None:
        self._alone = self._turn_rows <= 1
        self._turn_rows = 0

    def _flush(self) -> None:
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        records, waiting = self._records, self._waiting
        if not records:
            return
        self._records, self._waiting = [], []
        for start in range(0, len(records), self.max_batch):
            x, futures = self._encoded(records[start : start + self.max_batch], waiting[start : start + self.max_batch])
            if x is None:  # nothing could be encoded: no future waits
                continue
            try:
                scores = self._run(x).tolist()
            except Exception as e:  # each waiting request answers with the failure
                for f in futures:
                    _fail(f, e)
                continue
            self._on_batch(len(futures))
            for f, p in zip(futures, scores):
                if not f.done():
                    f.set_result(p)

    def _encoded(self, records: list, futures: list[asyncio.Future]) -> tuple[np.ndarray | None, list]:
        # The batch's rows and the futures they answer. Encoded together; if that fails, one by one,
        # so that only the records that cannot be encoded fail (each with its own error).
        try:
            return self._encode(records), futures
        except Exception as e:
            if len(records) == 1:
                _fail(futures[0], NotEncoded(e))
                return None, []
        rows, encoded = [], []
        for record, future in zip(records, futures):
            try:
                rows.append(self._encode([record]))
            except Exception as e:
                _fail(future, NotEncoded(e))
            else:
                encoded.append(future)
        return (np.concatenate(rows) if rows else None), encoded


def _fail(future: asyncio.Future, e: Exception) -> None:
    if not future.done():
        future.set_exception(e)

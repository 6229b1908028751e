"""What serving workers share, so that what is one decision stays one across them (``serving.workers``).

- ``SharedBuckets``: the gateway's token buckets in shared memory behind one lock, so a key's rate limit
  holds across workers (not N times the limit), whichever worker each request reaches.
- ``WorkerLink``: a worker's seat among the others — its heartbeat and readiness (the supervisor feeds the
  systemd watchdog and sends READY by them), and the counts each publishes every heartbeat to a file of
  its own in a private folder, which the worker answering /metrics adds up (one view of all of them); a
  worker restarted in a seat counts on from what the seat's last worker published.

Everything here is created by the supervisor and handed to each worker as it is spawned.
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import pickle
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

SLOTS = 16_384  # buckets held at once: callers active within a minute, with room to spare
PROBES = 8  # slots looked at from a caller's own before the stalest of them is taken over
STALE_HEARTBEAT_S = 3.0  # a worker that has not beaten for this long counts as not answering


class _Bucket(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint64), ("tokens", ctypes.c_double), ("last", ctypes.c_double)]


class SharedBuckets:
    """Token buckets as ``gateway.access.RateLimiter`` keeps them (a burst of one second's worth, refilled
    continuously), in an open-addressed table in shared memory: each worker takes its tokens from the same
    bucket. A caller's slot is one of ``PROBES`` from its hash; when all are held by others, the one idle
    longest is taken over (a bucket idle a minute is full again: forgetting it changes nothing)."""

    def __init__(self, slots: int = SLOTS):
        context = multiprocessing.get_context("spawn")
        self._table = context.RawArray(_Bucket, slots)
        self._lock = context.Lock()

    def take(self, who: str, rate: float) -> float:
        """Take one token; 0 if granted, else the seconds until one is available."""
        key = _key(who)
        burst = max(1.0, rate)
        with self._lock:
            now = time.monotonic()  # read under the lock: a bucket's time never goes back
            slot = self._slot(key)
            if slot.key != key:
                slot.key, slot.tokens, slot.last = key, burst, now
            tokens = min(burst, slot.tokens + (now - slot.last) * rate)
            slot.last = now
            if tokens >= 1:
                slot.tokens = tokens - 1
                return 0.0
            slot.tokens = tokens
        return (1 - tokens) / rate

    def _slot(self, key: int) -> _Bucket:
        table = self._table
        start = key % len(table)
        stalest = None
        for probe in range(PROBES):
            slot = table[(start + probe) % len(table)]
            if slot.key == key or slot.key == 0:
                return slot
            if stalest is None or slot.last < stalest.last:
                stalest = slot
        assert stalest is not None
        return stalest


@lru_cache(maxsize=4096)
def _key(who: str) -> int:
    # 64 bits of the caller's name, never 0 (a free slot's)
    return int.from_bytes(hashlib.blake2b(who.encode(), digest_size=8).digest(), "little") | 1


@dataclass(frozen=True)
class WorkerLink:
    """One worker's seat (``index``) among ``count``; the supervisor holds the same with no seat of its own."""

    count: int
    folder: Path  # the workers' published counts, a file each (private to this run, removed at its end)
    buckets: SharedBuckets
    heartbeats: Any  # shared doubles: each worker's last beat (time.monotonic, one clock across processes)
    ready: Any  # shared booleans: each worker has loaded every model it knows (its /readyz answers 200)
    index: int = -1

    @classmethod
    def create(cls, count: int, folder: Path) -> WorkerLink:
        context = multiprocessing.get_context("spawn")
        return cls(
            count,
            folder,
            SharedBuckets(),
            context.RawArray(ctypes.c_double, count),
            context.RawArray(ctypes.c_bool, count),
        )

    def seat(self, index: int) -> WorkerLink:
        """The link as worker ``index`` holds it; its heartbeat starts now (a worker starting is not stale)."""
        self.heartbeats[index] = time.monotonic()
        self.ready[index] = False
        return replace(self, index=index)

    def beat(self, ready: bool) -> None:
        self.heartbeats[self.index] = time.monotonic()
        self.ready[self.index] = ready

    def beating(self, stale: float = STALE_HEARTBEAT_S) -> int:
        """How many workers beat within ``stale`` seconds."""
        now = time.monotonic()
        return sum(now - beat < stale for beat in self.heartbeats)

    def all_ready(self) -> bool:
        return all(self.ready)

    def publish(self, counts: dict[str, Any]) -> None:
        """Replace this worker's published counts (a reader sees the old file or the new, never half of one)."""
        path = self._path(self.index)
        part = path.with_suffix(".part")
        part.write_bytes(pickle.dumps(counts, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(part, path)

    def left_behind(self) -> dict[str, Any] | None:
        """The counts this seat's previous worker last published, if one died in it: a restarted worker counts
        on from them, so the summed counters never go down (what it counted after its last beat is lost)."""
        try:
            return pickle.loads(self._path(self.index).read_bytes())
        except FileNotFoundError:
            return None

    def peers(self) -> list[dict[str, Any]]:
        """The counts the other workers last published (a worker not yet started has none)."""
        found = []
        for index in range(self.count):
            if index != self.index:
                try:
                    found.append(pickle.loads(self._path(index).read_bytes()))
                except FileNotFoundError:
                    continue
        return found

    def _path(self, index: int) -> Path:
        return self.folder / f"worker-{index}.pickle"

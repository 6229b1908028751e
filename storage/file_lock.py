"""An exclusive OS file lock that says who holds it: one training run per model, one `appliance up` per data
directory.

A file lock rather than a row in a database or a PID file: a process killed with SIGKILL cannot delete a row
or a file, but the kernel drops its file locks, so a dead holder never blocks the next one. The holder writes
a line about itself into the file (a reader that is refused shows it) and empties it on release.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOLDER_BYTES = 4096  # the most of a holder's line a refused caller reads


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is what it wrote about itself ('' before it wrote)."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


@contextmanager
def exclusive_lock(path: Path, holder: str) -> Iterator[None]:
    """Hold ``path``'s lock for a block with ``holder`` written in it, or raise LockHeld at once (never wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(os.pread(fd, HOLDER_BYTES, 0).decode(errors="replace").strip()) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # free: a reader finds it empty
    finally:
        os.close(fd)  # closing the descriptor releases the lock

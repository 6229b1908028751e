"""One `appliance up` per data directory: two would run two schedulers over the same databases, each training
and monitoring on its own clock, and answer on two addresses from one prediction log.

The guard is an exclusive OS file lock held for as long as `up` runs. The kernel drops it when the process
ends however it ends (Ctrl-C, SIGKILL, a crash), so unlike a PID file it never outlives its holder and never
needs clearing by hand. The other commands and the dashboard (`appliance tui`) do not take it: they work beside
a running `up`, as they always have.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.errors import Unavailable


@contextmanager
def serving_lock(root: Path, address: str) -> Iterator[None]:
    """Hold the data directory's serving lock for a block, naming this process and ``address`` in it; Unavailable,
    naming the holder, if another `up` holds it."""
    path = root / "locks" / "up.lock"  # under locks/, beside the training locks; backups leave the folder out
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another `appliance up`"
            raise Unavailable(
                f"{root.resolve()} is already served by {holder}; stop that one first, or give this one another --home"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {address}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

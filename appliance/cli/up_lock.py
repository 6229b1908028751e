"""One `appliance up` per data directory: two would run two schedulers over the same databases, each training
and monitoring on its own clock, and answer on two addresses from one prediction log.

The guard is an exclusive OS file lock held for as long as `up` runs. The kernel drops it when the process
ends however it ends (Ctrl-C, SIGKILL, a crash), so unlike a PID file it never outlives its holder and never
needs clearing by hand. The other commands and the dashboard (`appliance tui`) do not take it: they work beside
a running `up`, as they always have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from appliance.errors import Unavailable
from appliance.layout import Layout
from storage.file_lock import LockHeld, exclusive_lock


@contextmanager
def serving_lock(root: Path, address: str) -> Iterator[None]:
    """Hold the data directory's serving lock for a block, naming this process and ``address`` in it; Unavailable,
    naming the holder, if another `up` holds it."""
    with ExitStack() as held_here:
        try:
            held_here.enter_context(exclusive_lock(Layout(root).serving_lock, f"PID {os.getpid()} on {address}"))
        except LockHeld as held:
            raise Unavailable(
                f"{root.resolve()} is already served by {held.holder or 'another `appliance up`'}; stop that one "
                "first, or give this one another --home"
            ) from None
        yield

"""One training run per model at a time: an OS file lock, which the kernel releases when its holder dies."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from appliance.errors import Conflict
from appliance.layout import Layout
from storage.file_lock import LockHeld, exclusive_lock


@contextmanager
def model_lock(root: Path, model: str, run_id: str) -> Iterator[None]:
    """Hold the model's training lock for a block; Conflict, naming the holder, if another run has it (an OS
    file lock: a run killed with SIGKILL never blocks the next one)."""
    holder = json.dumps({"run_id": run_id, "pid": os.getpid(), "since": time.time()})
    with ExitStack() as held_here:
        try:
            held_here.enter_context(exclusive_lock(Layout(root).training_lock(model), holder))
        except LockHeld as held:
            try:
                who = json.loads(held.holder)
                detail = f"run {who['run_id'][:8]} in process {who['pid']}"
            except (ValueError, KeyError):
                detail = "another run"
            raise Conflict(
                f"model '{model}' is already training ({detail}); wait for it to finish (see `appliance runs list`)"
            ) from None
        yield


def lock_holder(root: Path, model: str) -> dict | None:
    """Who holds the model's training lock ({"run_id", "pid", "since"}), or None; reads, never takes it.

    The holder writes itself into the file and empties it on release; a holder killed before that is
    recognized by its process being gone."""
    try:
        who = json.loads(Layout(root).training_lock(model).read_text() or "null")
        pid = who["pid"]
    except (OSError, ValueError, TypeError, KeyError):
        return None  # no file, empty (free) or unreadable
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return who

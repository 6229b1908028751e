"""One training run per model at a time: an OS file lock, which the kernel releases when its holder dies."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.errors import Conflict
from appliance.layout import Layout


@contextmanager
def model_lock(root: Path, model: str, run_id: str) -> Iterator[None]:
    """Hold the model's training lock for a block; Conflict, naming the holder, if another run has it.

    A file lock rather than a row in the database: a process killed with SIGKILL cannot release a
    row, but the kernel drops its file locks, so a dead run never blocks the next one.
    """
    path = Layout(root).training_lock(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            try:
                who = json.loads(holder)
                detail = f"run {who['run_id'][:8]} in process {who['pid']}"
            except (ValueError, KeyError):
                detail = "another run"
            raise Conflict(
                f"model '{model}' is already training ({detail}); wait for it to finish (see `appliance runs list`)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run_id": run_id, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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

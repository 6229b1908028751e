"""A graceful stop for training: SIGINT or SIGTERM asks a run to end at its next safe point (LightGBM between
iterations, the MLP between epochs with its checkpoint saved, the pipeline between stages), resumably."""

from __future__ import annotations

import signal
import threading

from appliance.errors import TrainingStopped

_requested = threading.Event()
_cause: list[str] = []  # what asked first, as the run records it: a signal's name, or why


def request_stop(signum: int | None = None, _frame: object = None, why: str = "request") -> None:
    """Ask the running training to stop (usable as a signal handler: the signal is what the run records)."""
    if not _cause:
        _cause.append(signal.Signals(signum).name if signum is not None else why)
    _requested.set()


def stop_requested() -> bool:
    """Whether a stop was asked for; trainers check this between iterations or epochs, the pipeline between stages."""
    return _requested.is_set()


def check(where: str) -> None:
    """Raise TrainingStopped if a stop was asked for, saying what asked and where the run ended."""
    if _requested.is_set():
        raise TrainingStopped(f"stopped by {_cause[0]} {where}")

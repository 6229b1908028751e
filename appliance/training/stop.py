"""A graceful stop for training: SIGTERM asks a run to end at its next safe point, checkpoint saved."""

from __future__ import annotations

import threading

from appliance.errors import TrainingStopped

_requested = threading.Event()


def request_stop(*_: object) -> None:
    """Ask the running training to stop (usable as a signal handler)."""
    _requested.set()


def stop_requested() -> bool:
    """Whether a stop was asked for; trainers check this between epochs, the pipeline between stages."""
    return _requested.is_set()


def check(where: str, model: str = "MODEL") -> None:
    """Raise TrainingStopped if a stop was asked for, saying where the run ended and how to continue."""
    if _requested.is_set():
        raise TrainingStopped(f"stopped by SIGTERM {where}; continue the run with `appliance train {model} --resume`")

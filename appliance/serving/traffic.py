"""Live traffic of a model from the prediction log: requests per second, latency, error rate."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import numpy as np

from appliance.layout import Layout
from storage.prediction_log import PredictionStore

# Enough rows for stable p99s; beyond this the rate is extrapolated from the newest rows' span.
MAX_ROWS = 50_000


class Traffic(msgspec.Struct, frozen=True):
    model: str
    seconds: float  # the window looked back over
    requests: int  # prediction rows logged in it (one per scored record)
    per_second: float
    p50_ms: float | None
    p99_ms: float | None
    error_rate: float | None  # share of rows whose status was not 200


def recent_traffic(root: Path, model: str, seconds: float = 60.0, now: float | None = None) -> Traffic:
    """A model's traffic over the last ``seconds``; reading never creates predictions.db."""
    path = Layout(root).predictions_db
    if not path.exists():
        return Traffic(model, seconds, 0, 0.0, None, None, None)
    now = time.time() if now is None else now
    store = PredictionStore(path)
    try:
        rows = store.recent(model, now - seconds, MAX_ROWS)
    finally:
        store.close()
    if not rows:
        return Traffic(model, seconds, 0, 0.0, None, None, None)
    latency = np.array([r["latency_ms"] for r in rows], dtype=np.float64)
    errors = sum(1 for r in rows if r["status"] != 200)
    span = seconds if len(rows) < MAX_ROWS else max(now - rows[-1]["received_at"], 1e-3)
    return Traffic(
        model,
        seconds,
        len(rows),
        len(rows) / span,
        float(np.percentile(latency, 50)),
        float(np.percentile(latency, 99)),
        errors / len(rows),
    )

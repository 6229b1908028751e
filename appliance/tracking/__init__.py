"""Experiment tracking: runs, params, metric series, tags, artifacts and environment in tracking.db.

From a training script of your own::

    from appliance import tracking

    with tracking.start_run(model="fraud") as run:
        run.log_params({"learning_rate": 0.05})
        for epoch in range(10):
            run.log_metric("loss", loss, step=epoch)
"""

from __future__ import annotations

from pathlib import Path

from appliance.config import default_home
from appliance.layout import Layout
from appliance.tracking.run import TrackedRun
from appliance.tracking.store import TrackingStore
from storage.artifacts import ArtifactStore

__all__ = ["TrackedRun", "TrackingStore", "start_run"]


def start_run(
    model: str, name: str = "", *, home: Path | str | None = None, kind: str = "script", tags: dict | None = None
) -> TrackedRun:
    """Start a run in the data directory (default: the appliance's); finish it with ``with`` or ``finish()``."""
    layout = Layout(Path(home).expanduser() if home else default_home())
    layout.root.mkdir(parents=True, exist_ok=True)
    store = TrackingStore(layout.tracking_db)
    run = TrackedRun.create(
        store, ArtifactStore(layout.artifacts), model=model, name=name or kind, kind=kind, owns_store=True
    )
    if tags:
        run.set_tags(tags)
    return run

"""Where each part of a data directory lives: the one module that names its files and folders.

All of the appliance's state is under one root, so it can be backed up, restored and measured as a
whole. Code with only that root at hand (a worker process, the dashboard, a backup) asks a
``Layout`` for a path rather than spelling a name. The names are the on-disk format: data
directories and backups made by earlier versions depend on them, so they never change.
"""

from __future__ import annotations

from pathlib import Path

# Each database is a SQLite file of its own because each is a write path of its own: a busy writer
# of one never blocks the others.
METADATA_DB = "metadata.db"  # models, snapshots, runs, versions, deployments, keys, alerts, audit log
PREDICTIONS_DB = "predictions.db"  # the prediction log: the serving hot path
MONITORING_DB = "monitoring.db"  # scheduled job runs and monitoring results
TRACKING_DB = "tracking.db"  # experiment runs and their metric series
ONLINE_DB = "online.db"  # the latest feature values per entity
DATABASE_SUFFIX = ".db"  # every database is a file at the top with this ending; backups find them by it

# Folders of content-addressed, immutable files: backed up file by file as they are.
ARTIFACTS = "artifacts"
OFFLINE = "offline"
ARCHIVE = "archive"
FILE_TREES = (ARTIFACTS, OFFLINE, ARCHIVE)

SETTINGS = "appliance.toml"
SPECS = "specs"  # model specs and their data files that a backup carries and a restore brings


class InRoot:
    """A path under a layout's root, read as an attribute: ``Layout(root).metadata_db`` is ``root/metadata.db``."""

    __slots__ = ("parts",)

    def __init__(self, *parts: str):
        self.parts = parts

    def __get__(self, layout: Layout, owner: type | None = None) -> Path:
        return layout.root.joinpath(*self.parts)


class Layout:
    """The paths under one data directory. Path arithmetic only: nothing is opened or created."""

    __slots__ = ("root",)

    metadata_db = InRoot(METADATA_DB)
    predictions_db = InRoot(PREDICTIONS_DB)
    monitoring_db = InRoot(MONITORING_DB)
    tracking_db = InRoot(TRACKING_DB)
    online_db = InRoot(ONLINE_DB)
    artifacts = InRoot(ARTIFACTS)  # model files, by content hash
    offline = InRoot(OFFLINE)  # ingested data snapshots as Parquet, by content hash
    prediction_archive = InRoot(ARCHIVE, "predictions")  # the prediction log's days past the hot window, a file a day
    feedback = InRoot("feedback")  # labelled predictions written out for ingest, a Parquet file per model and batch
    # Training runs' checkpoints, a folder per run (in the data directory, so a restarted run finds them)
    checkpoints = InRoot("checkpoints")
    settings = InRoot(SETTINGS)  # the optional settings of the whole data directory (retention, cost)
    serving_lock = InRoot("locks", "up.lock")  # one `appliance up` per data directory; backups leave locks/ out

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"

    def databases(self) -> list[Path]:
        """Every database in the data directory, by name (those of newer versions too)."""
        return sorted(self.root.glob("*" + DATABASE_SUFFIX))

    def exists(self) -> bool:
        """Whether the root is an initialized data directory (``appliance init`` creates metadata.db)."""
        return self.metadata_db.exists()

    def run_checkpoints(self, run_id: str) -> Path:
        return self.checkpoints / run_id

    def training_lock(self, model: str) -> Path:
        """The file lock that lets one run at a time train ``model``."""
        return self.root / "locks" / f"train-{model}.lock"

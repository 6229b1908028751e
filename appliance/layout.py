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


class Layout:
    """The paths under one data directory. Path arithmetic only: nothing is opened or created."""

    __slots__ = ("root",)

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"

    @property
    def metadata_db(self) -> Path:
        return self.root / METADATA_DB

    @property
    def predictions_db(self) -> Path:
        return self.root / PREDICTIONS_DB

    @property
    def monitoring_db(self) -> Path:
        return self.root / MONITORING_DB

    @property
    def tracking_db(self) -> Path:
        return self.root / TRACKING_DB

    @property
    def online_db(self) -> Path:
        return self.root / ONLINE_DB

    def databases(self) -> list[Path]:
        """Every database in the data directory, by name (those of newer versions too)."""
        return sorted(self.root.glob("*" + DATABASE_SUFFIX))

    def exists(self) -> bool:
        """Whether the root is an initialized data directory (``appliance init`` creates metadata.db)."""
        return self.metadata_db.exists()

    @property
    def artifacts(self) -> Path:
        """Model files, by content hash."""
        return self.root / ARTIFACTS

    @property
    def offline(self) -> Path:
        """Ingested data snapshots as Parquet, by content hash."""
        return self.root / OFFLINE

    @property
    def prediction_archive(self) -> Path:
        """The prediction log's days past the hot window, one Parquet file per day."""
        return self.root / ARCHIVE / "predictions"

    @property
    def feedback(self) -> Path:
        """Labelled predictions written out for ingest, one Parquet file per model and batch."""
        return self.root / "feedback"

    @property
    def checkpoints(self) -> Path:
        """Training runs' checkpoints, a folder per run (in the data directory, so a restarted run finds them)."""
        return self.root / "checkpoints"

    def run_checkpoints(self, run_id: str) -> Path:
        return self.checkpoints / run_id

    def training_lock(self, model: str) -> Path:
        """The file lock that lets one run at a time train ``model``."""
        return self.root / "locks" / f"train-{model}.lock"

    @property
    def settings(self) -> Path:
        """The optional settings of the whole data directory (retention, cost)."""
        return self.root / SETTINGS

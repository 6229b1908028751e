"""An opened data directory: the metadata database, the artifact, offline and online stores."""

from __future__ import annotations

from pathlib import Path

from appliance.layout import Layout
from appliance.registry import Registry
from appliance.spec import ModelSpec, load_spec
from appliance.tracking.store import TrackingStore
from storage.artifacts import ArtifactStore
from storage.database import connect
from storage.metadata_schema import MIGRATIONS
from storage.offline_store import OfflineStore
from storage.online_store import OnlineStore


class Home:
    """All of the appliance's state lives under one folder that can be backed up as a whole; where each
    part of it lives is ``layout``'s to say (appliance/layout.py)."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self.layout = Layout(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.layout.metadata_db, MIGRATIONS)
        self.registry = Registry(self.conn)
        self.artifacts = ArtifactStore(self.layout.artifacts)
        self.offline = OfflineStore(self.layout.offline)
        self.online = OnlineStore(self.layout.online_db)  # its own file: materialization never blocks metadata
        self._tracking: TrackingStore | None = None

    @property
    def tracking(self) -> TrackingStore:
        """tracking.db, opened on first use (experiment runs: a write path of its own)."""
        if self._tracking is None:
            self._tracking = TrackingStore(self.layout.tracking_db)
        return self._tracking

    def spec(self, model: str) -> ModelSpec:
        """The spec a registered model was added with (read fresh, so edits take effect)."""
        return load_spec(Path(self.registry.model(model).spec_path))

    def add_model(self, spec: ModelSpec, actor: str = "cli") -> bool:
        """Register a model from its spec; returns False if it was already registered. A spec whose
        types disagree with its data contract is refused here, before any data is read."""
        from appliance.data.declared import check_entity_file, check_spec_types

        check_spec_types(spec)
        check_entity_file(spec)
        return self.registry.add_model(spec.name, str(spec.path), actor=actor)

    def close(self) -> None:
        if self._tracking is not None:
            self._tracking.close()
        self.conn.close()
        self.online.close()

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

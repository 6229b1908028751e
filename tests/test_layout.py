"""The data directory's layout: the names on disk, and the stores opened where it says."""

from __future__ import annotations

from appliance.home import Home
from appliance.layout import Layout
from appliance.machine.disk import disk_use


def test_the_names_on_disk_are_those_existing_data_directories_and_backups_hold(tmp_path):
    # A rename here would leave every existing data directory's data behind: these are its format.
    layout = Layout(tmp_path)
    named = {
        "metadata": layout.metadata_db,
        "predictions": layout.predictions_db,
        "monitoring": layout.monitoring_db,
        "tracking": layout.tracking_db,
        "online": layout.online_db,
        "artifacts": layout.artifacts,
        "offline": layout.offline,
        "prediction archive": layout.prediction_archive,
        "feedback": layout.feedback,
        "checkpoints": layout.run_checkpoints("run-1"),
        "training lock": layout.training_lock("fraud"),
        "settings": layout.settings,
    }
    assert {what: path.relative_to(tmp_path).as_posix() for what, path in named.items()} == {
        "metadata": "metadata.db",
        "predictions": "predictions.db",
        "monitoring": "monitoring.db",
        "tracking": "tracking.db",
        "online": "online.db",
        "artifacts": "artifacts",
        "offline": "offline",
        "prediction archive": "archive/predictions",
        "feedback": "feedback",
        "checkpoints": "checkpoints/run-1",
        "training lock": "locks/train-fraud.lock",
        "settings": "appliance.toml",
    }


def test_a_home_opens_its_stores_where_its_layout_says_and_they_are_what_backup_and_disk_use_find(tmp_path):
    assert not Layout(tmp_path).exists()
    with Home(tmp_path) as home:
        layout = home.layout
        assert home.artifacts.root == layout.artifacts and home.offline.root == layout.offline
        assert home.online.path == layout.online_db
        home.artifacts.put(b"model bytes")
        home.online.entities("any")  # opened on first use
        home.tracking.flush()  # likewise
    assert Layout(tmp_path).exists()
    assert Layout(tmp_path).databases() == [layout.metadata_db, layout.online_db, layout.tracking_db]
    parts = {p.name for p in disk_use(tmp_path).parts}
    assert parts == {"metadata.db", "online.db", "tracking.db", "artifacts/"}

"""Where the appliance keeps its state, and the bundled sample spec it runs with no configuration."""

from __future__ import annotations

import os
from pathlib import Path

import sample_data


def default_home() -> Path:
    """``$APPLIANCE_HOME``, else ``$XDG_DATA_HOME/appliance``, else ``~/.local/share/appliance``."""
    if os.environ.get("APPLIANCE_HOME"):
        return Path(os.environ["APPLIANCE_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "appliance"


def bundled_spec_path() -> Path:
    """The sample fraud model's spec, shipped with the package."""
    return sample_data.DIR / "fraud.toml"

"""Settings of a whole data directory (not of one model): `<home>/appliance.toml`, optional.

[retention]
hot_days = 7        # predictions stay in predictions.db this long (feedback must arrive within it)
archive_days = 90   # then as daily Parquet files under archive/predictions/, then deleted

[serving]
workers = 4         # API worker processes (default: the cores left after 2 for training and monitoring, 1 to 8)

[cost]              # see appliance/machine/cost.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from appliance.layout import Layout
from appliance.machine.cost import CostSection
from appliance.toml_file import load_toml


class RetentionSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hot_days: Annotated[int, msgspec.Meta(ge=1)] = 7
    archive_days: Annotated[int, msgspec.Meta(ge=0)] = 90


class ServingSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None  # API processes; unset: cores less 2, 1-8


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    retention: RetentionSection = RetentionSection()
    serving: ServingSection = ServingSection()
    cost: CostSection = CostSection()


def load_settings(home: Path) -> Settings:
    """The data directory's settings file, or the defaults when it has none."""
    path = Layout(home).settings
    if not path.exists():
        return Settings()
    return load_toml(path, Settings, "settings file", "a TOML file")

"""Settings of a whole data directory (not of one model): `<home>/appliance.toml`, optional.

    [retention]
    hot_days = 7        # predictions stay in predictions.db this long (feedback must arrive within it)
    archive_days = 90   # then as daily Parquet files under archive/predictions/, then deleted

    [cost]              # see appliance/machine/cost.py
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from appliance.errors import InvalidInput
from appliance.machine.cost import CostSection
from appliance.spec import read_toml

FILE_NAME = "appliance.toml"


class RetentionSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hot_days: int = 7
    archive_days: int = 90

    def __post_init__(self) -> None:
        if self.hot_days < 1 or self.archive_days < 0:
            raise InvalidInput("retention: hot_days must be at least 1 and archive_days at least 0")


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    retention: RetentionSection = RetentionSection()
    cost: CostSection = CostSection()


def load_settings(home: Path) -> Settings:
    """The data directory's settings file, or the defaults when it has none."""
    path = Path(home) / FILE_NAME
    if not path.exists():
        return Settings()
    raw = read_toml(path, "settings file", "a TOML file")
    try:
        return msgspec.convert(raw, Settings)
    except msgspec.ValidationError as e:
        raise InvalidInput(f"settings file {path}: {e}; fix the file and try again") from None

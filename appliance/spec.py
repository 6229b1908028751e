"""The model spec: one TOML file per model — data, features, target, training, gates, serving."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from appliance.errors import InvalidInput, NotFound

FeatureType = Literal["float", "integer", "boolean", "category"]


class Feature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    type: FeatureType


class ModelSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    description: str = ""


class DataSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: str                 # labelled history: a Parquet/CSV file or folder, relative to the spec
    contract: str               # the data contract the source is checked against
    entities: str | None = None  # entity attributes (one row per entity key)
    live: str | None = None      # later traffic the demo replays through the API


class FeaturesSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    entity_key: str
    event_time: str
    request: list[Feature]
    entity_attributes: list[Feature] = []


class TargetSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    column: str
    threshold: float = 0.5      # probability at or above which the label is 1


class TrainingSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    trainer: Literal["lightgbm"] = "lightgbm"
    eval_days: int = 10         # the last N days of the snapshot are held out for evaluation
    seed: int = 7
    params: dict[str, float | int | str | bool] = {}


class ValidationSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_auc: float = 0.80
    max_parity_diff: float = 1e-5


class ServingSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_batch_rows: int = 1000


class ModelSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: ModelSection
    data: DataSection
    features: FeaturesSection
    target: TargetSection
    training: TrainingSection = TrainingSection()
    validation: ValidationSection = ValidationSection()
    serving: ServingSection = ServingSection()
    path: Path | None = None    # where the spec was read from; relative data paths resolve there

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def model_features(self) -> list[Feature]:
        """The model's inputs, in the order the model sees them."""
        return [*self.features.request, *self.features.entity_attributes]

    def resolve(self, relative: str) -> Path:
        """A data path from the spec, resolved against the spec's folder."""
        base = self.path.parent if self.path else Path.cwd()
        return (base / relative).resolve()


def read_toml(path: Path, what: str, expected: str) -> dict:
    """A TOML file's tables; a missing or malformed file is an error naming ``what`` it should be."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NotFound(f"{what} {path} does not exist; pass the path of {expected}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"{what} {path} is not valid TOML: {e}") from None


def load_spec(path: Path) -> ModelSpec:
    """Read and check a model spec; a bad spec is an error that names the file and the field."""
    path = Path(path)
    raw = read_toml(path, "model spec", "a .toml spec")
    try:
        spec = msgspec.convert(raw, ModelSpec)
    except msgspec.ValidationError as e:
        raise InvalidInput(f"model spec {path}: {e}; fix the spec and try again") from None
    names = [f.name for f in spec.model_features]
    if len(set(names)) != len(names):
        raise InvalidInput(f"model spec {path}: a feature is listed twice in {names}")
    if spec.training.eval_days < 1:
        raise InvalidInput(f"model spec {path}: training.eval_days must be at least 1")
    return msgspec.structs.replace(spec, path=path.resolve())


def spec_digest(path: Path) -> str:
    """sha256 of a spec file's bytes, recorded with each run."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

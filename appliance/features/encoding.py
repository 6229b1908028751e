"""The model's input matrix: one encoding of features shared by training and serving.

Numbers pass through as float32, booleans become 1/0, categories become their index in the
vocabulary learnt at training time. A null, or a category the model never saw, becomes NaN:
the model's defined answer for a missing value.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import polars as pl

from appliance.errors import InvalidInput
from appliance.spec import Feature, FeaturesSection

_TYPE_WORDS = {"float": "a number", "integer": "an integer", "boolean": "true or false",
               "category": "a string"}


class FeatureColumn(msgspec.Struct, frozen=True):
    name: str
    type: str
    categories: list[str] | None = None


class FeatureSchema(msgspec.Struct, frozen=True):
    """The ordered inputs of one model version, stored with the version, with the feature
    definitions it was trained with (so serving computes what this version expects)."""

    columns: list[FeatureColumn]
    definitions: FeaturesSection | None = None

    @classmethod
    def learn(cls, features: list[Feature], frame: pl.DataFrame,
              definitions: FeaturesSection | None = None) -> "FeatureSchema":
        """Fix the column order and each category's vocabulary from the training rows."""
        columns = []
        for f in features:
            categories = None
            if f.type == "category":
                categories = sorted(frame[f.name].drop_nulls().cast(pl.String).unique().to_list())
            columns.append(FeatureColumn(f.name, f.type, categories))
        return cls(columns, definitions)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def encode_frame(self, frame: pl.DataFrame) -> np.ndarray:
        """Encode a frame's feature columns as a float32 matrix (rows × features)."""
        exprs = []
        for c in self.columns:
            col = pl.col(c.name)
            if c.type == "category":
                col = col.cast(pl.String).replace_strict(
                    c.categories, list(range(len(c.categories))), default=None, return_dtype=pl.Float32)
            exprs.append(col.cast(pl.Float32).alias(c.name))
        return frame.select(exprs).to_numpy().astype(np.float32, copy=False).reshape(frame.height, -1)


class RecordEncoder:
    """Encodes request records (dicts of named features) for one schema; built once per loaded model."""

    def __init__(self, schema: FeatureSchema):
        self.schema = schema
        self._plan = [(c.name, c.type, {v: k for k, v in enumerate(c.categories or [])})
                      for c in schema.columns]

    def encode(self, records: list) -> np.ndarray:
        """A float32 matrix for the records; the first bad record raises InvalidInput naming the field."""
        plan = self._plan
        out = np.empty((len(records), len(plan)), dtype=np.float32)
        single = len(records) == 1
        for i, record in enumerate(records):
            where = "" if single else f"record {i}: "
            if type(record) is not dict:
                raise InvalidInput(f"{where}each record must be a JSON object of named features")
            row = out[i]
            for j, (name, kind, lookup) in enumerate(plan):
                try:
                    value = record[name]
                except KeyError:
                    raise InvalidInput(f"{where}missing feature '{name}'") from None
                if value is None:
                    row[j] = math.nan
                    continue
                t = type(value)
                if kind == "category":
                    if t is not str:
                        raise _wrong_type(where, name, kind, value)
                    row[j] = lookup.get(value, math.nan)
                elif kind == "float":
                    if t is not float and t is not int:
                        raise _wrong_type(where, name, kind, value)
                    row[j] = value
                elif kind == "integer":
                    if t is not int and not (t is float and value.is_integer()):
                        raise _wrong_type(where, name, kind, value)
                    row[j] = value
                else:  # boolean
                    if t is not bool:
                        raise _wrong_type(where, name, kind, value)
                    row[j] = 1.0 if value else 0.0
        return out


def _wrong_type(where: str, name: str, kind: str, value: object) -> InvalidInput:
    got = {bool: "a boolean", str: "a string", int: "an integer", float: "a number",
           list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
    return InvalidInput(f"{where}feature '{name}' must be {_TYPE_WORDS[kind]}, got {got}")

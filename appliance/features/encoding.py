"""The model's input matrix: one encoding of features shared by training and serving.

Numbers pass through as float32, booleans become 1/0, categories become their index in the
vocabulary learnt at training time. A null, or a category the model never saw, becomes NaN:
the model's defined answer for a missing value. A request's values follow ``data.values``: a
category may come as its text (a label: one the model never saw is refused past ``MAX_CATEGORY_CHARS``)
or as an integer code, a boolean as true/false or 0/1.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import polars as pl

from appliance.data.values import MAX_CATEGORY_CHARS, KeyType, key_type_of, type_name
from appliance.errors import InvalidInput
from appliance.spec import Feature, FeaturesSection

_TYPE_WORDS = {
    "float": "a number",
    "integer": "an integer",
    "boolean": "true or false (or 1 or 0)",
    "category": "a string",
    "category_code": "a string or an integer code",
}


class FeatureColumn(msgspec.Struct, frozen=True):
    name: str
    type: str
    categories: list[str] | None = None


class FeatureSchema(msgspec.Struct, frozen=True):
    """The ordered inputs of one model version, stored with the version, with the feature
    definitions it was trained with (so serving computes what this version expects)."""

    columns: list[FeatureColumn]
    definitions: FeaturesSection | None = None
    key_type: KeyType = "string"  # the entity key's type, as the data contract declared it at training
    key_nullable: bool = False  # trained on rows with no entity: a request may leave the key out too

    @classmethod
    def learn(
        cls,
        features: list[Feature],
        frame: pl.DataFrame,
        definitions: FeaturesSection | None = None,
        key_contract_type: str | None = None,
    ) -> FeatureSchema:
        """Fix the column order and each category's vocabulary from the training rows, and whether some
        of those rows had no entity (then a request may have none either, and gets no stored features)."""
        columns = []
        for f in features:
            categories = None
            if f.type == "category":
                categories = sorted(frame[f.name].drop_nulls().cast(pl.String).unique().to_list())
            columns.append(FeatureColumn(f.name, f.type, categories))
        key = definitions.entity_key if definitions is not None else None
        nullable = key is not None and key in frame.columns and frame[key].null_count() > 0
        return cls(columns, definitions, key_type_of(key_contract_type), nullable)

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
                    c.categories, list(range(len(c.categories))), default=None, return_dtype=pl.Float32
                )
            exprs.append(col.cast(pl.Float32).alias(c.name))
        return frame.select(exprs).to_numpy().astype(np.float32, copy=False).reshape(frame.height, -1)


class RecordEncoder:
    """Encodes request records (dicts of named features) for one schema; built once per loaded model."""

    def __init__(self, schema: FeatureSchema):
        self.schema = schema
        # Per column: the value types that pass as they are (numpy turns None into NaN, a boolean into
        # 1/0, an int or a float into the nearest float32), and a category's codes.
        self._plan = []
        for c in schema.columns:
            kind, lookup = c.type, _codes(c.categories) if c.type == "category" else None
            if lookup is not None and any(type(v) is int for v in lookup):
                kind = "category_code"  # integer codes: sent as 3 or as "3"
            self._plan.append((c.name, kind, _PASSING[kind], lookup))

    def encode(self, records: list) -> np.ndarray:
        """A float32 matrix for the records; the first bad record raises InvalidInput naming the field."""
        single = len(records) == 1
        if single:  # the serving case, without a loop's overhead
            rows = [self._row(records[0], "")]
        else:
            rows = [self._row(record, f"record {i}: ") for i, record in enumerate(records)]
        try:  # one conversion for the whole matrix, each value as an item assignment would convert it
            matrix = np.array(rows, dtype=np.float32)
        except OverflowError:
            raise self._beyond_float(rows, single) from None
        return matrix if rows else matrix.reshape(0, len(self._plan))

    def _row(self, record: object, where: str) -> list:
        if type(record) is not dict:
            raise InvalidInput(f"{where}each record must be a JSON object of named features")
        row = []
        append = row.append
        for name, kind, passing, lookup in self._plan:
            try:
                value = record[name]
            except KeyError:
                raise InvalidInput(f"{where}missing feature '{name}'") from None
            if type(value) not in passing:
                if not (
                    (kind == "integer" and type(value) is float and value.is_integer())
                    or (kind == "boolean" and type(value) is int and (value == 0 or value == 1))
                ):
                    raise _wrong_type(where, name, kind, value)
            elif lookup is not None and value is not None:
                code = lookup.get(value)
                if code is None:  # a category the model never saw: its missing value, if it is one at all
                    if type(value) is str and len(value) > MAX_CATEGORY_CHARS:
                        raise _too_long(where, name, value)
                    code = math.nan
                value = code
            append(value)
        return row

    def _beyond_float(self, rows: list[list], single: bool) -> InvalidInput:
        # An integer too large for a float (JSON allows any number of digits): name the first one.
        for i, row in enumerate(rows):
            for (name, kind, _, _), value in zip(self._plan, row):
                if type(value) is int and abs(value) >= _FLOAT_LIMIT:
                    return InvalidInput(
                        f"{'' if single else f'record {i}: '}feature '{name}' must be "
                        f"{_TYPE_WORDS[kind]} within a float's range"
                    )
        raise AssertionError("an OverflowError without an integer beyond a float's range")


_NONE = type(None)
_PASSING = {
    "float": frozenset({float, int, _NONE}),
    "integer": frozenset({int, _NONE}),
    "boolean": frozenset({bool, _NONE}),
    "category": frozenset({str, _NONE}),
    "category_code": frozenset({str, int, _NONE}),
}
_FLOAT_LIMIT = 2**1024


def _codes(categories: list[str]) -> dict:
    # A category's index by its text and, for integer codes (learnt as their digits), by the integer too.
    codes: dict = {v: k for k, v in enumerate(categories)}
    for v, k in list(codes.items()):
        if v.lstrip("-").isdigit() and v.isascii() and str(int(v)) == v:
            codes[int(v)] = k
    return codes


def _too_long(where: str, name: str, value: str) -> InvalidInput:
    return InvalidInput(
        f"{where}feature '{name}' is {len(value):,} characters; a category is a label, at most "
        f"{MAX_CATEGORY_CHARS:,} characters: send the category itself"
    )


def _wrong_type(where: str, name: str, kind: str, value: object) -> InvalidInput:
    return InvalidInput(f"{where}feature '{name}' must be {_TYPE_WORDS[kind]}, got {type_name(value)}")

"""What a model's data contract declares for the columns its spec uses.

The contract types the data; the spec says how the model reads each column. They must agree before
any data is ingested or trained on: a spec whose types disagree with the data is refused when it is
registered (``appliance init``) and when a batch is ingested, never after a promotion.
"""

from __future__ import annotations

import polars as pl

from appliance.data.contract import DataContract, FieldRule, load_contract
from appliance.data.sources import read_source
from appliance.data.values import KeyType, key_type_of
from appliance.errors import InvalidInput
from appliance.spec import ModelSpec

# The contract types each spec feature type reads from.
READABLE_AS = {
    "float": {"float", "integer"},
    "integer": {"integer"},
    "boolean": {"boolean", "integer"},      # an integer flag must be limited to 0 and 1
    "category": {"string", "integer"},      # a true/false column is a boolean feature
}


def model_contract(spec: ModelSpec) -> DataContract:
    """The data contract a spec names."""
    return load_contract(spec.resolve(spec.data.contract))


def entity_key_type(spec: ModelSpec, contract: DataContract | None = None) -> KeyType:
    """The type of the model's entity key as its contract declares it ("string" when it has none)."""
    key = spec.features.entity_key
    if key is None:
        return "string"
    rule = _rules(contract or model_contract(spec)).get(key)
    return key_type_of(rule.type if rule else None)


def check_spec_types(spec: ModelSpec, contract: DataContract | None = None) -> None:
    """Refuse a spec whose columns the contract lacks or types otherwise than the spec reads them."""
    contract = contract or model_contract(spec)
    rules = _rules(contract)
    where = f"model spec {spec.path or spec.name} and data contract {spec.resolve(spec.data.contract)}"
    problems = []
    keys = spec.features
    if keys.entity_key is not None:
        rule = rules.get(keys.entity_key)
        if rule is None:
            problems.append(f"the entity key '{keys.entity_key}' is not a contract field")
        elif rule.type not in ("string", "integer"):
            problems.append(f"the entity key '{keys.entity_key}' is a {rule.type}; a key is a string or an integer")
    time_rule = rules.get(keys.event_time)
    if time_rule is None:
        problems.append(f"the event time '{keys.event_time}' is not a contract field")
    elif time_rule.type != "timestamp":
        problems.append(f"the event time '{keys.event_time}' is a {time_rule.type}; declare it a timestamp "
                        "(ISO 8601 text and datetimes both read as one)")
    target = rules.get(spec.target.column)
    if target is None:
        problems.append(f"the target '{spec.target.column}' is not a contract field")
    for f in keys.request:
        rule = rules.get(f.name)
        if rule is None:
            problems.append(f"request feature '{f.name}' is not a contract field")
        else:
            problems += _disagreement(f.name, f.type, rule)
    for a in keys.aggregations:
        if a.column is not None:
            rule = rules.get(a.column)
            if rule is None:
                problems.append(f"aggregation '{a.name}' reads '{a.column}', which is not a contract field")
            elif rule.type not in ("float", "integer", "boolean"):
                problems.append(f"aggregation '{a.name}' reads '{a.column}', a {rule.type}; it needs numbers")
    if problems:
        raise InvalidInput(f"{where} disagree: {'; '.join(problems)}; fix the spec or the contract")


def check_entity_file(spec: ModelSpec, frame: pl.DataFrame | None = None) -> None:
    """Refuse an entity attributes file (``frame``, else read) that lacks the key or an attribute, or holds
    values the spec's type for it cannot read (the file has no contract: its column types are its own)."""
    if not (spec.features.entity_attributes and spec.data.entities):
        return
    path = spec.resolve(spec.data.entities)
    frame = read_source(path) if frame is None else frame
    problems = []
    for f in spec.features.entity_attributes:
        if f.name not in frame.columns:
            problems.append(f"attribute '{f.name}' is not a column")
            continue
        dtype = frame.schema[f.name]
        if f.type in ("float", "integer") and not (dtype.is_integer() if f.type == "integer" else dtype.is_numeric()):
            problems.append(f"attribute '{f.name}' is a {f.type} in the spec but holds {dtype}")
        elif f.type == "boolean" and dtype != pl.Boolean and not (
                dtype.is_integer() and frame[f.name].drop_nulls().is_in([0, 1]).all()):
            problems.append(f"attribute '{f.name}' is a boolean in the spec but holds {dtype} values other "
                            "than true/false or 0/1")
    key = spec.features.entity_key
    if key not in frame.columns:
        problems.append(f"the entity key '{key}' is not a column")
    if problems:
        raise InvalidInput(f"entity attributes file {path} does not fit model spec {spec.path or spec.name}: "
                           f"{'; '.join(problems)}; fix the file or the spec's entity_attributes")


def _disagreement(name: str, feature_type: str, rule: FieldRule) -> list[str]:
    if rule.type not in READABLE_AS[feature_type]:
        readable = " or ".join(sorted(READABLE_AS[feature_type]))
        return [f"feature '{name}' is a {feature_type} in the spec but a {rule.type} in the contract "
                f"(a {feature_type} reads from {readable})"]
    if feature_type == "boolean" and rule.type == "integer":
        allowed = set(rule.allowed_values or [])
        if not allowed or not allowed <= {0, 1}:
            return [f"feature '{name}' is a boolean in the spec and an integer in the contract: limit it "
                    "with allowed_values = [0, 1]"]
    return []


def _rules(contract: DataContract) -> dict[str, FieldRule]:
    return {rule.name: rule for rule in contract.fields}

"""What a model's data contract declares for the columns its spec uses.

The contract types the data; the spec says how the model reads each column. They must agree before
any data is ingested or trained on: a spec whose types disagree with the data is refused when it is
registered (``appliance init``) and when a batch is ingested, never after a promotion.
"""

from __future__ import annotations

import msgspec
import polars as pl

from appliance.data.contract import DataContract, FieldRule, load_contract
from appliance.data.sources import read_source
from appliance.data.values import KeyType, key_type_of
from appliance.errors import InvalidInput
from appliance.spec import ModelSpec
from appliance.task import Task, label_text

# The contract types each spec feature type reads from.
READABLE_AS = {
    "float": {"float", "integer"},
    "integer": {"integer"},
    "boolean": {"boolean", "integer"},  # an integer flag must be limited to 0 and 1
    "category": {"string", "integer"},  # a true/false column is a boolean feature
}


def model_contract(spec: ModelSpec) -> DataContract:
    """The data contract a spec names, as the model reads it: a multiclass target's values are limited to
    the spec's classes (so a label outside them is quarantined like any other contract violation)."""
    contract = load_contract(spec.resolve(spec.data.contract))
    classes = spec.target.classes
    if spec.target.task != "multiclass" or classes is None:
        return contract
    fields = [
        msgspec.structs.replace(rule, allowed_values=list(classes)) if rule.name == spec.target.column else rule
        for rule in contract.fields
    ]
    return msgspec.structs.replace(contract, fields=fields)


def model_task(spec: ModelSpec, contract: DataContract | None = None) -> Task:
    """What the model predicts: the spec's task, with a multiclass target's classes (declared in the spec,
    else the contract's allowed values for the target), or a text binary target's two values, the negative
    one first (the contract's allowed values, the spec's ``positive`` second: label 1)."""
    target, positive = spec.target, spec.target.positive
    if target.task == "binary" and positive is None:
        return Task("binary", (0, 1), target.threshold)
    if target.task == "binary" and positive is not None:
        rule = _rules(contract or model_contract(spec)).get(target.column)
        problem = _positive_problem(positive, rule) if rule else f"'{target.column}' is not a contract field"
        if rule is None or problem:
            raise InvalidInput(f"model spec {spec.path or spec.name}: {problem}")
        (negative,) = (str(v) for v in rule.allowed_values or [] if str(v) != positive)
        return Task("binary", (negative, positive), target.threshold)
    if target.task == "regression":
        return Task("regression", ())
    classes = target.classes
    if classes is None:
        rule = _rules(contract or model_contract(spec)).get(target.column)
        classes = rule.allowed_values if rule else None
        if not classes or len(classes) < 3:
            raise InvalidInput(
                f"model spec {spec.path or spec.name}: a multiclass target needs its classes: "
                f"declare classes = [...] under [target], or allowed_values for '{target.column}' "
                "in the data contract (three or more)"
            )
    return Task("multiclass", tuple(c if isinstance(c, str) else int(c) for c in classes))


def entity_key_type(spec: ModelSpec, contract: DataContract | None = None) -> KeyType:
    """The type of the model's entity key as its contract declares it ("string" when it has none)."""
    key = spec.features.entity_key
    if key is None:
        return "string"
    rule = _rules(contract or model_contract(spec)).get(key)
    return key_type_of(rule.type if rule else None)


def event_time_format(spec: ModelSpec, contract: DataContract | None = None) -> str | None:
    """The text format the model's contract declares for its event time (None: ISO 8601 text only)."""
    rule = _rules(contract or model_contract(spec)).get(spec.features.event_time)
    return rule.format if rule else None


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
        problems.append(
            f"the event time '{keys.event_time}' is a {time_rule.type}; declare it a timestamp "
            "(ISO 8601 text, text in its format and datetimes read as one)"
        )
    target = rules.get(spec.target.column)
    if target is None:
        problems.append(f"the target '{spec.target.column}' is not a contract field")
    else:  # judged on the contract as written, not as narrowed to the spec's classes (model_contract)
        written = _rules(load_contract(spec.resolve(spec.data.contract))).get(spec.target.column, target)
        problems += _target_disagreement(spec, written)
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
        elif (
            f.type == "boolean"
            and dtype != pl.Boolean
            and not (dtype.is_integer() and frame[f.name].drop_nulls().is_in([0, 1]).all())
        ):
            problems.append(
                f"attribute '{f.name}' is a boolean in the spec but holds {dtype} values other than true/false or 0/1"
            )
    key = spec.features.entity_key
    if key not in frame.columns:
        problems.append(f"the entity key '{key}' is not a column")
    if problems:
        raise InvalidInput(
            f"entity attributes file {path} does not fit model spec {spec.path or spec.name}: "
            f"{'; '.join(problems)}; fix the file or the spec's entity_attributes"
        )


# The contract types a target of each task reads from.
TARGET_TYPES = {
    "binary": {"integer", "boolean", "float", "string"},  # text: two values, [target] positive names one
    "multiclass": {"string", "integer"},
    "regression": {"float", "integer"},
}


def _target_disagreement(spec: ModelSpec, rule: FieldRule) -> list[str]:
    task = spec.target.task
    if rule.type not in TARGET_TYPES[task]:
        readable = " or ".join(sorted(TARGET_TYPES[task]))
        hint = {
            "regression": '; a text target is a class: set task = "multiclass"',
            "multiclass": '; a numeric target is a value: set task = "regression"',
        }.get(task, "")
        return [
            (
                f"the target '{rule.name}' is a {rule.type} in the contract, which a {task} target cannot be "
                f"(it reads from {readable}){hint}"
            )
        ]
    if task == "binary" and (rule.type == "string" or spec.target.positive is not None):
        problem = _positive_problem(spec.target.positive, rule)
        return [problem] if problem else []
    classes = spec.target.classes
    if task == "multiclass" and classes is not None:
        typed = str if rule.type == "string" else int
        mistyped = [c for c in classes if type(c) is not typed]
        if mistyped:
            word, how = ("text", 'quoted text, "like this"') if typed is str else ("integers", "a number")
            return [
                (
                    f"target.classes {mistyped} are not {word}, but '{rule.name}' is a {rule.type} in the "
                    f"contract; write every class as {how}"
                )
            ]
        if rule.allowed_values is not None:
            declared = {label_text(c) for c in rule.allowed_values}
            outside = [c for c in classes if label_text(c) not in declared]
            if outside:
                return [
                    (
                        f"target.classes {outside} are not among the contract's allowed_values for "
                        f"'{rule.name}' {rule.allowed_values}; add them there or remove them from the spec"
                    )
                ]
    if task == "multiclass" and classes is None and len(rule.allowed_values or []) < 3:
        found = rule.allowed_values or []
        return [
            (
                f"the multiclass target '{rule.name}' has {'no classes' if not found else f'only {found}'}: "
                "declare classes = [...] under [target], or allowed_values in the contract (three or more)"
            )
        ]
    return []


def _positive_problem(positive: str | None, rule: FieldRule) -> str | None:
    """What keeps a binary target of text (or one with ``positive`` set) from reading as 0/1, or None: it is
    text, the contract lists its two values, and ``positive`` names one of them."""
    if rule.type != "string":
        return (
            f"[target] positive names a text target's positive value, but '{rule.name}' is a {rule.type} in the "
            "contract (its 1 or true is the positive class); remove positive"
        )
    values = [str(v) for v in rule.allowed_values or []]
    if len(set(values)) != 2 or len(values) != 2:  # two values, and two different ones as text
        return (
            f"the binary target '{rule.name}' is text: the contract must list its two values as allowed_values "
            f"(it lists {values or 'none'})"
        )
    if positive not in values:
        said = "names none" if positive is None else f"names {positive!r}"
        return (
            f"the binary target '{rule.name}' holds {values[0]!r} and {values[1]!r}; [target] positive {said}: "
            f'set positive = "{values[0]}" or "{values[1]}", the class the model gives the probability of'
        )
    return None


def _disagreement(name: str, feature_type: str, rule: FieldRule) -> list[str]:
    if rule.type not in READABLE_AS[feature_type]:
        readable = " or ".join(sorted(READABLE_AS[feature_type]))
        return [
            f"feature '{name}' is a {feature_type} in the spec but a {rule.type} in the contract "
            f"(a {feature_type} reads from {readable})"
        ]
    if feature_type == "boolean" and rule.type == "integer":
        allowed = set(rule.allowed_values or [])
        if not allowed or not allowed <= {0, 1}:
            return [
                f"feature '{name}' is a boolean in the spec and an integer in the contract: limit it "
                "with allowed_values = [0, 1]"
            ]
    return []


def _rules(contract: DataContract) -> dict[str, FieldRule]:
    return {rule.name: rule for rule in contract.fields}

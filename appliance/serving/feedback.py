"""Feedback outcomes in the terms of the model they are for, as the prediction log stores them.

The log keeps one number per outcome (``storage.prediction_log``): a binary model's 0 or 1, a multiclass
model's class INDEX (in the task's class order; a text binary target's positive value is 1), a regression
model's observed value. A client sends each as its model's task reads it: 0/1 or true/false (a text binary
target: its two values only, so no client has to know which one 1 is); the class as declared
("cat", or 2, matched by canonical
text as ``appliance.task`` matches labels); a finite number, within the min and max the data contract declares
for the target (the value a batch would quarantine is no outcome either). Anything else is a 422 naming the field.

One prediction has one outcome: the same one sent again is a retry, accepted; a different one is a 409 unless
the request says ``"replace": true`` (a label correction), so two sources disagreeing on a label are told so
rather than settled by whichever came last.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec

from appliance.data.contract import DataContract
from appliance.errors import Conflict, InvalidInput
from appliance.serving.bodies import Outcome
from appliance.spec import ModelSpec
from appliance.task import Task, label_text
from storage.prediction_log import OutcomeConflict, PredictionStore

_encode = msgspec.json.Encoder().encode


class TargetRange(NamedTuple):
    """The min and max a data contract declares for a regression target (None: not declared)."""

    column: str = ""
    low: float | None = None
    high: float | None = None

    def __str__(self) -> str:
        bounds = [f"min {self.low:g}"] * (self.low is not None) + [f"max {self.high:g}"] * (self.high is not None)
        return " and ".join(bounds)


UNBOUNDED = TargetRange()  # a classifier's target, or one the contract sets no min or max for


def target_range(spec: ModelSpec, contract: DataContract) -> TargetRange:
    """The range a regression model's outcomes must fall in: its target's min and max in the contract."""
    rule = next((r for r in contract.fields if r.name == spec.target.column), None)
    if spec.target.task != "regression" or rule is None:
        return UNBOUNDED
    return TargetRange(rule.name, rule.min, rule.max)


def stored_outcomes(
    task: Task, model: str, outcomes: list[Outcome], target: TargetRange
) -> list[tuple[str, int, float]]:
    """(request_id, position, outcome as the log stores it) of each outcome; InvalidInput naming the first
    one whose outcome is not of its model's kind, or outside the target's range, and how many are not."""
    read = _reader(task)
    low, high = target.low, target.high
    stored, wrong, outside = [], [], []
    for i, o in enumerate(outcomes):
        value = read(o.outcome)
        if value is None:
            wrong.append(i)
        elif (low is not None and value < low) or (high is not None and value > high):
            outside.append(i)
        else:
            stored.append((o.request_id, o.position, value))
    if wrong:
        raise InvalidInput(
            f"{_first(outcomes, wrong)} is not an outcome of {task.kind} model '{model}'; send {expected(task)}"
            + _more(wrong)
        )
    if outside:
        raise InvalidInput(
            f"{_first(outcomes, outside)} is outside the range the data contract of '{model}' declares for "
            f"'{target.column}' ({target}); send the observed value within it, or widen the contract's range "
            f"if such values are real{_more(outside)}"
        )
    return stored


def record_outcomes(
    store: PredictionStore, task: Task, model: str, outcomes: list[tuple[str, int, float]], replace: bool
) -> list[tuple[str, int]]:
    """Attach the outcomes in the log (the unknown ones listed back); a Conflict, with nothing recorded, where
    one differs from the outcome its prediction already has and ``replace`` was not asked for."""
    try:
        return store.attach_feedback(model, outcomes, replace)
    except OutcomeConflict as e:
        request_id, position, recorded, sent = e.conflicts[0]
        raise Conflict(
            f"request_id {request_id!r} position {position} already has the outcome {_told(task, recorded)}, "
            f"not {_told(task, sent)}{_more(e.conflicts)}; nothing was recorded: to correct a label, send the "
            'outcomes again with "replace": true'
        ) from None


def _first(outcomes: list[Outcome], wrong: list[int]) -> str:
    return f"outcomes[{wrong[0]}].outcome: {_shown(outcomes[wrong[0]].outcome)}"


def _more(wrong: list) -> str:
    return f" (and {len(wrong) - 1} more like it)" if len(wrong) > 1 else ""


def _told(task: Task, stored: float) -> str:
    """A stored outcome in the terms the client sent it: a classifier's class (0/1, or a text target's value),
    else the number."""
    return _shown(task.classes[int(stored)]) if task.classifier else _shown(stored)


def expected(task: Task) -> str:
    """What a model of this task takes as an outcome, said to the client."""
    if task.flags:
        return "1 or 0 (or true or false)"
    if task.classifier:  # a multiclass model's classes, or a text binary target's two values
        return f"one of its classes: {', '.join(_shown(c) for c in task.classes)}"
    return "the observed value, a finite number"


def _reader(task: Task):
    # The stored number of one sent outcome (a float, text or a flag, as the request decoded it); None if it
    # is not of the task's kind.
    if task.flags:
        return lambda v: float(v) if type(v) is bool or v in (0, 1) else None
    if task.classifier:
        index = {text: float(i) for i, text in enumerate(task.class_text())}
        # true/false is no class, even where 1 is: a flag sent as a class is a mistake to say, not to guess at
        return lambda v: None if type(v) is bool else index.get(label_text(v))
    return lambda v: v if type(v) is float and math.isfinite(v) else None


def _shown(value: object) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is float and value.is_integer():
        return str(int(value))
    return _encode(value).decode()

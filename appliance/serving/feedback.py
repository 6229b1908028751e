"""Feedback outcomes in the terms of the model they are for, as the prediction log stores them.

The log keeps one number per outcome (``storage.prediction_log``): a binary model's 0 or 1, a multiclass
model's class INDEX (in the task's class order), a regression model's observed value. A client sends each
as its model's task reads it: 0/1 or true/false; the class as declared ("cat", or 2, matched by canonical
text as ``appliance.task`` matches labels); a finite number. Anything else is a 422 naming the field.
"""

from __future__ import annotations

import math

import msgspec

from appliance.errors import InvalidInput
from appliance.serving.bodies import Outcome
from appliance.task import Task, label_text

_encode = msgspec.json.Encoder().encode


def stored_outcomes(task: Task, model: str, outcomes: list[Outcome]) -> list[tuple[str, int, float]]:
    """(request_id, position, outcome as the log stores it) of each outcome; InvalidInput naming the first
    one whose outcome is not of its model's kind, and how many are not."""
    read = _reader(task)
    stored, wrong = [], []
    for i, o in enumerate(outcomes):
        value = read(o.outcome)
        if value is None:
            wrong.append(i)
        else:
            stored.append((o.request_id, o.position, value))
    if wrong:
        first = wrong[0]
        more = f" (and {len(wrong) - 1} more like it)" if len(wrong) > 1 else ""
        raise InvalidInput(
            f"outcomes[{first}].outcome: {_shown(outcomes[first].outcome)} is not an outcome of "
            f"{task.kind} model '{model}'; send {expected(task)}{more}"
        )
    return stored


def expected(task: Task) -> str:
    """What a model of this task takes as an outcome, said to the client."""
    if task.kind == "binary":
        return "1 or 0 (or true or false)"
    if task.kind == "multiclass":
        return f"one of its classes: {', '.join(_shown(c) for c in task.classes)}"
    return "the observed value, a finite number"


def _reader(task: Task):
    # The stored number of one sent outcome (a float, text or a flag, as the request decoded it); None if it
    # is not of the task's kind.
    if task.kind == "binary":
        return lambda v: float(v) if type(v) is bool or v in (0, 1) else None
    if task.kind == "multiclass":
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

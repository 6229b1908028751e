"""Random search over the spec's hyperparameter space; each trial is a child run of the pipeline run."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import msgspec

from appliance import progress
from appliance.errors import InvalidInput
from appliance.spec import SearchRange, SearchSection


class Trial(msgspec.Struct, frozen=True):
    name: str
    run_id: str
    params: dict
    validation_score: float  # the spec's metric on the validation days (AUC, macro F1, RMSE, ...)


def sample_params(space: dict[str, SearchRange], rng: random.Random) -> dict:
    """One draw from the space: a choice, or a value uniform (log-uniform with ``log``) in [low, high]."""
    drawn = {}
    for name, r in sorted(space.items()):
        if r.choices:
            drawn[name] = rng.choice(r.choices)
            continue
        if r.low is None or r.high is None or r.low > r.high or (r.log and r.low <= 0):
            raise InvalidInput(
                f"training.search.space.{name} needs `choices = [...]` or `low <= high` "
                "(positive with `log = true`); fix the spec"
            )
        if r.log:
            value = math.exp(rng.uniform(math.log(r.low), math.log(r.high)))
        else:
            value = rng.uniform(r.low, r.high)
        drawn[name] = round(value) if r.integer else value
    return drawn


def random_search(
    search: SearchSection,
    base: dict,
    seed: int,
    score: Callable[[str, dict], tuple[str, float]],
    higher_is_better: bool = True,
) -> tuple[Trial, list[Trial]]:
    """Run ``search.trials`` trials; ``score(name, params)`` trains one and returns (run id, validation score).

    Draws come from a generator seeded by the spec's seed, so a resumed or reproduced search
    proposes the same trials. The best trial has the best score in the metric's direction (the highest
    AUC, the lowest RMSE); a NaN score is never best unless every one is, and ties go to the earlier trial.
    """
    rng = random.Random(seed)
    sign = 1.0 if higher_is_better else -1.0

    def best(trials: list[Trial]) -> Trial:
        return max(trials, key=lambda t: -math.inf if math.isnan(t.validation_score) else sign * t.validation_score)

    trials: list[Trial] = []
    with progress.step("trial", search.trials) as trials_done:
        for i in range(search.trials):
            params = {**base, **sample_params(search.space, rng)}
            name = f"trial-{i + 1}"
            run_id, value = score(name, params)
            trials.append(Trial(name, run_id, params, value))
            trials_done.update(i + 1, {"best so far": best(trials).validation_score})
    return best(trials), trials

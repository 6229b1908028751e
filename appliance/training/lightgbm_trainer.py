"""The LightGBM trainer: gradient-boosted trees on the encoded feature matrix."""

from __future__ import annotations

import os
from collections.abc import Callable

import lightgbm as lgb
import numpy as np

from appliance import progress
from appliance.features.encoding import FeatureSchema
from appliance.task import BINARY, Task, TaskKind
from appliance.training import stop

DEFAULT_PARAMS = {"num_boost_round": 300, "learning_rate": 0.05, "num_leaves": 31}
# LightGBM's objective and the training curve's metric for each task (RMSE reads in the target's units).
OBJECTIVE: dict[str, str] = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
CURVE_METRIC: dict[str, str] = {"binary": "binary_logloss", "multiclass": "multi_logloss", "regression": "rmse"}


def default_threads() -> int:
    """Half the cores: training must leave the serving path room (and OpenMP spins when oversubscribed)."""
    return max(1, (os.cpu_count() or 2) // 2)


def train_lightgbm(
    schema: FeatureSchema,
    x: np.ndarray,
    y: np.ndarray,
    params: dict,
    seed: int,
    log_metric: Callable[[str, float, int], None] | None = None,
    task: Task = BINARY,
) -> lgb.Booster:
    """Fit the task's model (``y`` from ``task.labels``); deterministic on CPU for a given seed, data and
    thread count.

    With ``log_metric``, the training loss of every round is reported (the training curve): log loss for
    classifiers, RMSE for regression. Each round is a step of ``appliance.progress``, with that loss beside it.
    """
    params = {**DEFAULT_PARAMS, **params}
    rounds = int(params.pop("num_boost_round"))
    categorical = [i for i, c in enumerate(schema.columns) if c.type == "category"]
    dataset = lgb.Dataset(
        x, label=y, feature_name=positional_names(x.shape[1]), categorical_feature=categorical, free_raw_data=False
    )
    settings = {
        "objective": OBJECTIVE[task.kind],
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": default_threads(),
        **params,
    }
    if task.kind == "multiclass":
        settings["num_class"] = len(task.classes)
    valid = [dataset] if log_metric is not None else []
    with progress.step("iteration", rounds) as rounds_done:

        def report(env: lgb.callback.CallbackEnv) -> None:
            curve = {f"train_{metric}": value for _, metric, value, _ in env.evaluation_result_list}
            if log_metric is not None:
                for name, value in curve.items():
                    log_metric(name, value, env.iteration)
            rounds_done.update(env.iteration + 1, {name.replace("_", " ", 1): v for name, v in curve.items()})
            stop.check(f"after iteration {env.iteration + 1} of {rounds}")  # a stop waits one tree, not the stage

        booster = lgb.train(
            {"metric": CURVE_METRIC[task.kind], **settings},
            dataset,
            num_boost_round=rounds,
            valid_sets=valid,
            valid_names=["train"] if valid else None,
            callbacks=[report],
        )
    return float32_thresholds(booster)


def positional_names(width: int) -> list[str]:
    """The booster's feature names: LightGBM's own default for unnamed columns, by position.

    A spec may name a feature anything (``2nd.score [%]``, ``grp"q``), but LightGBM refuses the characters
    JSON uses in a name; the booster is ours and the spec keeps the names, so the booster never sees them.
    """
    return [f"Column_{i}" for i in range(width)]


def float32_thresholds(booster: lgb.Booster) -> lgb.Booster:
    """The same model with every split threshold rounded down to a float32.

    ONNX tree ensembles compare in float32. LightGBM picks thresholds in float64 halfway between
    training values; rounded to nearest float32 such a threshold can land on a value the model
    sends the other way. Rounding down instead gives identical decisions for every float32 input,
    so the native model and its ONNX export agree to float32 summation error.
    """
    lines = []
    for line in booster.model_to_string().splitlines():
        if line.startswith("tree_sizes="):
            continue  # byte offsets of the trees; they change with the text, and are optional
        if line.startswith("threshold="):
            exact = np.array(line[len("threshold=") :].split(), dtype=np.float64)
            single = exact.astype(np.float32)
            above = single.astype(np.float64) > exact
            single[above] = np.nextafter(single[above], np.float32(-np.inf))
            line = "threshold=" + " ".join(repr(float(t)) for t in single)
        lines.append(line)
    return lgb.Booster(model_str="\n".join(lines) + "\n")


def native_predict(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """The booster's own output, the reference for the ONNX parity check: P(class 1) [n] for a binary
    model, each class's probability [n, k] for a multiclass one, the value [n] for regression."""
    return booster.predict(x.astype(np.float64))


def booster_task_kind(model_text: str) -> TaskKind:
    """The task a stored booster was trained for, read from its ``objective=`` header line."""
    for line in model_text.splitlines():
        if line.startswith("objective="):
            objective = line[len("objective=") :].split()[0]
            if objective in ("multiclass", "multiclassova"):
                return "multiclass"
            return "binary" if objective in ("binary", "cross_entropy") else "regression"
        if line.startswith("Tree="):
            break  # the header is over: a booster without an objective line predicts raw values
    return "regression"

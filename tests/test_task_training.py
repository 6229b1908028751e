"""Both trainers for multiclass and regression: they learn, export to ONNX with parity, reload, quantize.

The data is generated homes, nothing like the fraud sample: a listing's type (four text classes) and its
price (skewed, in the hundreds of thousands), from its floor area, rooms, district and garden.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import onnx
import pytest

from appliance.errors import InvalidInput
from appliance.features.encoding import FeatureColumn, FeatureSchema
from appliance.scoring import metrics, onnx_model
from appliance.spec import SearchRange, SearchSection
from appliance.task import Task
from appliance.training.quantize import int8_variant
from appliance.training.search import random_search
from appliance.training.trainers import fit, load_model
from storage.artifacts import ArtifactStore
from tests.conftest import interrupted_and_resumed

DISTRICTS = ["centre", "east", "north", "south", "west"]
SCHEMA = FeatureSchema(
    [
        FeatureColumn("area", "float"),
        FeatureColumn("rooms", "integer"),
        FeatureColumn("district", "category", DISTRICTS),
        FeatureColumn("garden", "boolean"),
    ]
)
LISTING = Task("multiclass", ("studio", "flat", "house", "villa"))
PRICE = Task("regression", ())
TASKS = {"multiclass": LISTING, "regression": PRICE}
PARAMS = {"lightgbm": {"num_boost_round": 80}, "mlp": {"epochs": 25, "batch_size": 128, "hidden": 32}}
TRAIN_ROWS, EVAL_ROWS = 3_000, 1_000
# Classifier probabilities are compared absolutely; values relative to their scale (see onnx_model.parity).
PARITY = 1e-5


def homes(n: int, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Encoded features, each home's listing type and its price."""
    rng = np.random.default_rng(seed)
    area = rng.lognormal(4.3, 0.45, n)  # m², right-skewed around 75
    rooms = np.clip(np.round(area / 25 + rng.normal(0, 0.7, n)), 1, 9)
    district = rng.integers(0, len(DISTRICTS), n)
    garden = rng.integers(0, 2, n)
    x = np.column_stack([area, rooms, district, garden]).astype(np.float32)
    price_per_m2 = np.array([6_000, 3_500, 3_000, 2_500, 4_000])[district] * (1 + 0.15 * garden)
    price = area * price_per_m2 * rng.lognormal(0, 0.12, n)
    # The type follows size and garden, blurred by noise: no feature alone gives it away.
    size = np.log(area) + 0.4 * garden + rng.normal(0, 0.12, n)
    listing = np.array(LISTING.classes)[np.digitize(size, [4.0, 4.45, 4.85])]
    return x, listing.tolist(), price


@pytest.fixture(scope="module")
def data():
    x, listing, price = homes(TRAIN_ROWS + EVAL_ROWS)
    labels = {"multiclass": LISTING.labels(listing), "regression": PRICE.labels(price)}
    return {kind: (x[:TRAIN_ROWS], y[:TRAIN_ROWS], x[TRAIN_ROWS:], y[TRAIN_ROWS:]) for kind, y in labels.items()}


@pytest.fixture(scope="module")
def trained(data):
    """Each (trainer, task) model, trained once for the module."""
    models = {}

    def get(trainer: str, kind: str):
        if (trainer, kind) not in models:
            x, y, _, _ = data[kind]
            models[trainer, kind] = fit(trainer, SCHEMA, x, y, PARAMS[trainer], seed=7, task=TASKS[kind])
        return models[trainer, kind]

    return get


@pytest.mark.parametrize("trainer", ["lightgbm", "mlp"])
def test_a_multiclass_model_learns_and_its_onnx_export_gives_the_same_probabilities(trainer, data, trained):
    _, y, x_eval, y_eval = data["multiclass"]
    model = trained(trainer, "multiclass")
    p = model.predict(x_eval)
    assert model.task_kind == "multiclass" and p.shape == (EVAL_ROWS, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    majority = np.bincount(y).max() / len(y)
    accuracy = float(np.mean(p.argmax(axis=1) == y_eval))
    assert accuracy > majority + 0.2, (accuracy, majority)

    sess = onnx_model.session(model.to_onnx(), ["CPUExecutionProvider"])
    probabilities = sess.run([onnx_model.PROBABILITIES], {onnx_model.INPUT_NAME: x_eval})[0]
    assert probabilities.shape == (EVAL_ROWS, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert onnx_model.parity(sess, p, x_eval, LISTING) <= PARITY
    assert onnx_model.predict(sess, x_eval[:1], LISTING).shape == (1, 4)  # the batch dimension is dynamic

    again = load_model(trainer, model.to_bytes())
    assert again.task_kind == "multiclass"
    np.testing.assert_array_equal(again.predict(x_eval), p)
    assert again.to_onnx() == model.to_onnx()  # the export is reproducible byte for byte


@pytest.mark.parametrize("trainer", ["lightgbm", "mlp"])
def test_a_regression_model_learns_a_skewed_price_and_its_onnx_export_gives_the_same_value(trainer, data, trained):
    _, _, x_eval, y_eval = data["regression"]
    model = trained(trainer, "regression")
    value = model.predict(x_eval)
    assert model.task_kind == "regression" and value.shape == (EVAL_ROWS,) and value.dtype == np.float64
    r2 = 1 - np.sum((y_eval - value) ** 2) / np.sum((y_eval - y_eval.mean()) ** 2)
    assert r2 > 0.5, r2

    onnx_bytes = model.to_onnx()
    graph = onnx.load_from_string(onnx_bytes).graph
    assert [o.name for o in graph.output] == [onnx_model.VALUE]
    sess = onnx_model.session(onnx_bytes, ["CPUExecutionProvider"])
    raw = sess.run([onnx_model.VALUE], {onnx_model.INPUT_NAME: x_eval})[0]
    assert raw.shape == (EVAL_ROWS, 1)
    # Prices near 300 000 in float32 are off by about 0.02 from rounding alone, so an absolute bound of
    # 1e-5 would fail any correct export: parity for values is relative to their root mean square.
    parity = onnx_model.parity(sess, value, x_eval, PRICE)
    assert parity <= PARITY
    gap = np.max(np.abs(raw[:, 0] - value))
    assert gap == pytest.approx(parity * np.sqrt(np.mean(value**2)), rel=1e-6)
    assert onnx_model.predict(sess, x_eval[:1], PRICE).shape == (1,)

    again = load_model(trainer, model.to_bytes())
    assert again.task_kind == "regression"
    np.testing.assert_array_equal(again.predict(x_eval), value)
    assert again.to_onnx() == onnx_bytes


@pytest.mark.parametrize("trainer", ["lightgbm", "mlp"])
@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_missing_unseen_and_out_of_range_inputs_get_a_finite_answer_in_onnx(trainer, kind, trained):
    model = trained(trainer, kind)
    odd = np.array(
        [
            [np.nan, np.nan, np.nan, np.nan],  # every feature missing
            [80, 3, np.nan, 1],  # a district the model never saw (encoded as missing)
            [80, 3, 99, 1],  # a code past the vocabulary
            [3e38, -5, -1, np.inf],
            [-np.inf, 1e9, 2.5, -3],
        ],
        dtype=np.float32,
    )
    sess = onnx_model.session(model.to_onnx(), ["CPUExecutionProvider"])
    for output in (model.predict(odd), onnx_model.predict(sess, odd, TASKS[kind])):
        assert len(output) == len(odd) and np.isfinite(output).all()
        if kind == "multiclass":
            assert ((0 <= output) & (output <= 1)).all()
            np.testing.assert_allclose(output.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_the_int8_variant_of_the_mlp_is_measured_on_the_tasks_metric(kind, data, trained, tmp_path):
    _, _, x_eval, y_eval = data[kind]
    task = TASKS[kind]
    onnx_bytes = trained("mlp", kind).to_onnx()
    store = ArtifactStore(tmp_path)
    variant = int8_variant(onnx_bytes, x_eval, y_eval, put=store.put, task=task)
    quantized = store.get(variant.onnx_sha256)
    assert "DynamicQuantizeLinear" in {n.op_type for n in onnx.load_from_string(quantized).graph.node}
    float_value = metrics.score(
        task, task.metric, y_eval, onnx_model.predict(onnx_model.session(onnx_bytes), x_eval, task)
    )
    int8_output = onnx_model.predict(onnx_model.session(quantized), x_eval, task)
    assert variant.metric == task.metric
    assert variant.value == pytest.approx(metrics.score(task, task.metric, y_eval, int8_output))
    assert variant.delta == pytest.approx(variant.value - float_value, abs=1e-6)
    # Quantization costs a little, never the model: within 5% of the float32 model's figure.
    assert abs(variant.delta) < 0.05 * abs(float_value)
    assert variant.p99_ms_int8 > 0
    assert variant.latency_gain == pytest.approx(variant.p99_ms_float32 / variant.p99_ms_int8)


@pytest.mark.parametrize("kind, curve", [("multiclass", "validation_macro_f1"), ("regression", "validation_rmse")])
def test_the_mlp_logs_the_tasks_validation_metric_every_epoch(kind, curve, data):
    x, y, x_eval, y_eval = data[kind]
    logged: list[tuple[str, float, int]] = []
    model = fit(
        "mlp",
        SCHEMA,
        x,
        y,
        {"epochs": 3, "hidden": 16},
        seed=1,
        task=TASKS[kind],
        validation=(x_eval, y_eval),
        log_metric=lambda name, value, step: logged.append((name, value, step)),
    )
    assert [(name, step) for name, _, step in logged] == [(n, e) for e in range(3) for n in ("train_loss", curve)]
    last = logged[-1][1]
    assert last == pytest.approx(metrics.score(TASKS[kind], TASKS[kind].metric, y_eval, model.predict(x_eval)))


@pytest.mark.parametrize("kind, curve", [("multiclass", "train_multi_logloss"), ("regression", "train_rmse")])
def test_lightgbm_logs_the_tasks_training_curve(kind, curve, data):
    x, y, _, _ = data[kind]
    logged = []
    fit(
        "lightgbm",
        SCHEMA,
        x,
        y,
        {"num_boost_round": 5},
        seed=1,
        task=TASKS[kind],
        log_metric=lambda name, value, step: logged.append((name, step)),
    )
    assert logged == [(curve, step) for step in range(5)]


def test_a_regression_fit_resumed_from_its_checkpoint_is_the_same_model(data, tmp_path):
    x, y, x_eval, _ = data["regression"]
    params = {"epochs": 3, "hidden": 16}
    whole = fit("mlp", SCHEMA, x, y, params, seed=3, task=PRICE)
    checkpoint = tmp_path / "final.pt"
    resumed, epochs = interrupted_and_resumed(
        partial(fit, "mlp", SCHEMA, x, y, params, seed=3, task=PRICE), crash_in_epoch=1, checkpoint=checkpoint
    )
    assert epochs == [1, 2]
    np.testing.assert_array_equal(resumed.predict(x_eval), whole.predict(x_eval))
    # A checkpoint of another task is not resumed from: its head has the wrong shape.
    classes = fit("mlp", SCHEMA, x, data["multiclass"][1], params, seed=3, task=LISTING, checkpoint=checkpoint)
    assert classes.predict(x_eval).shape == (EVAL_ROWS, 4)


@pytest.mark.parametrize("trainer", ["lightgbm", "mlp"])
def test_labels_a_trainer_cannot_learn_are_refused_with_one_clear_error(trainer, data):
    x, y, _, _ = data["multiclass"]
    outside = y.copy()
    outside[:3] = -1  # what task.labels gives a value outside the declared classes
    with pytest.raises(InvalidInput, match="3 training rows have a target outside the classes"):
        fit(trainer, SCHEMA, x, outside, PARAMS[trainer], seed=1, task=LISTING)
    values = data["regression"][1].copy()
    values[5] = np.nan
    with pytest.raises(InvalidInput, match="a regression target needs a number in every row"):
        fit(trainer, SCHEMA, x, values, PARAMS[trainer], seed=1, task=PRICE)


@pytest.mark.parametrize("higher_is_better, best", [(True, "trial-2"), (False, "trial-3")])
def test_search_keeps_the_best_trial_in_the_metrics_direction(higher_is_better, best):
    search = SearchSection(trials=4, space={"num_leaves": SearchRange(choices=[15, 31, 63])})
    scores = iter([0.5, 0.9, 0.1, float("nan")])  # e.g. AUC (higher is better) or RMSE (lower is better)
    chosen, trials = random_search(search, {}, 1, lambda name, params: (f"run-{name}", next(scores)), higher_is_better)
    assert chosen.name == best and [t.validation_score for t in trials][:3] == [0.5, 0.9, 0.1]


@pytest.mark.parametrize("trainer", ["lightgbm", "mlp"])
def test_a_binary_model_stored_before_tasks_existed_loads_as_binary(trainer, data):
    import io

    import torch

    x, y, x_eval, _ = data["multiclass"]
    large = (y >= 2).astype(np.int8)  # a house or a villa: a binary target
    model = fit(trainer, SCHEMA, x, large, PARAMS[trainer], seed=1)
    stored = model.to_bytes()
    if trainer == "mlp":  # the config an MLP was stored with before it had a task
        saved = torch.load(io.BytesIO(stored), weights_only=True)
        del saved["config"]["task"], saved["config"]["classes"]
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        stored = buffer.getvalue()
    again = load_model(trainer, stored)
    assert again.task_kind == "binary"
    p = again.predict(x_eval)
    assert p.shape == (EVAL_ROWS,)
    np.testing.assert_array_equal(p, model.predict(x_eval))
    assert onnx_model.parity(onnx_model.session(again.to_onnx()), p, x_eval) <= PARITY

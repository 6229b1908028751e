"""Bring your own model: a LightGBM model trained outside the appliance on data unlike the sample,
registered from its ONNX (or its model file) through the gates, promoted, served, monitored."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import onnxmltools
import polars as pl
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxmltools.convert.common.data_types import FloatTensorType

from appliance.cli import main
from appliance.errors import InvalidInput
from appliance.home import Home
from appliance.layout import Layout
from appliance.monitoring import store
from appliance.monitoring.reference import SCORE, load_reference
from storage.prediction_log import PredictionStore
from tests.own_data import spec_text

START = datetime(2026, 3, 2, tzinfo=UTC)
VOCABULARY = ["red", "green", "blue"]  # the outside model's codes: not the sorted order the appliance learns
FEATURES = ["x1", "x2", "color", "flag"]


def events(rows: int, first_day: int, days: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86400, rows))
    x1 = np.round(rng.normal(size=rows), 3)
    x2 = rng.integers(0, 10, rows)
    color = rng.choice(VOCABULARY, rows)
    flag = rng.random(rows) < 0.3
    logit = 1.6 * x1 + 0.15 * x2 + 1.2 * (color == "blue") + 0.8 * flag - 1.5
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pl.DataFrame(
        {
            "event_id": [f"e{seed}-{i}" for i in range(rows)],
            "customer": [f"c{k:03d}" for k in rng.integers(0, 300, rows)],
            "at": [START + timedelta(days=first_day, seconds=float(s)) for s in seconds],
            "x1": x1,
            "x2": x2,
            "color": color,
            "flag": flag,
            "churned": churned,
        }
    )


def encode(frame: pl.DataFrame) -> np.ndarray:
    """How the outside team encodes its rows: the spec's feature order, its own category codes."""
    codes = np.array([VOCABULARY.index(c) for c in frame["color"]], dtype=np.float64)
    return np.column_stack([frame["x1"].to_numpy(), frame["x2"].to_numpy(), codes, frame["flag"].to_numpy()]).astype(
        np.float32
    )


def to_onnx(booster: lgb.Booster, width: int, **options) -> bytes:
    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(options.pop("name", "features"), FloatTensorType([None, width]))],
        zipmap=options.pop("zipmap", False),
        target_opset=15,
    )
    return model.SerializeToString()


def cli(home: Path, capsys, *args: str) -> SimpleNamespace:
    code = main(["--home", str(home), *(str(a) for a in args)])
    out = capsys.readouterr()
    return SimpleNamespace(code=code, out=out.out, err=out.err)


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> SimpleNamespace:
    """A spec and contract, 16 days of history, 2 later days, and a model trained outside on the history."""
    folder = tmp_path_factory.mktemp("outside")
    history, later = events(2400, 0, 16, seed=1), events(300, 16, 2, seed=2)
    history.write_parquet(folder / "history.parquet")
    later.write_parquet(folder / "later.parquet")
    (folder / "contract.toml").write_text(spec_text("churn_events", "contract.toml"))
    (folder / "churn.toml").write_text(spec_text("churn_events", "spec.toml"))
    train = history.filter(pl.col("at") < START + timedelta(days=12))
    booster = lgb.train(
        {
            "objective": "binary",
            "verbosity": -1,
            "num_leaves": 7,
            "min_data_in_leaf": 20,
            "seed": 3,
            "num_threads": 1,
            "deterministic": True,
        },
        lgb.Dataset(encode(train), train["churned"].to_numpy(), feature_name=FEATURES, categorical_feature=[2]),
        num_boost_round=40,
    )
    (folder / "model.onnx").write_bytes(to_onnx(booster, 4))
    booster.save_model(str(folder / "model.txt"))
    (folder / "categories.json").write_text(json.dumps({"color": VOCABULARY}))
    narrow = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 3, "num_threads": 1},
        lgb.Dataset(encode(train)[:, :3], train["churned"].to_numpy()),
        num_boost_round=3,
    )
    (folder / "narrow.onnx").write_bytes(to_onnx(narrow, 3))
    (folder / "zipmap.onnx").write_bytes(to_onnx(booster, 4, zipmap=True))
    (folder / "misnamed.onnx").write_bytes(to_onnx(booster, 4, name="input"))
    home = folder / "home"
    assert main(["--home", str(home), "init", "--spec", str(folder / "churn.toml")]) == 0
    assert main(["--home", str(home), "ingest", "churn", str(folder / "history.parquet")]) == 0
    return SimpleNamespace(folder=folder, home=home, booster=booster, later=later)


@pytest.fixture
def home(outside, tmp_path) -> Path:
    shutil.copytree(outside.home, tmp_path / "home")
    return tmp_path / "home"


def test_register_promote_predict_reproduce_and_monitor(outside, home, capsys):
    onnx_file = outside.folder / "model.onnx"
    result = cli(
        home,
        capsys,
        "register",
        "churn",
        "--onnx",
        onnx_file,
        "--categories",
        outside.folder / "categories.json",
        "--reason",
        "trained by the data team",
    )
    assert result.code == 0, result.err
    assert "gate onnx_parity: n/a — not applicable: registered from ONNX" in result.out
    assert "gate min_auc: pass" in result.out and "gate robustness: pass" in result.out
    assert "registered churn v1 from onnx file" in result.out and "as candidate" in result.out

    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    with Home(home) as h:
        v = h.registry.version("churn", 1)
        assert v.status == "registered" and v.metrics["auc"] > 0.7 and v.code_version == "outside"
        assert v.params["source"] == f"onnx file {digest}" and v.artifact_sha256 == digest
        assert v.feature_schema["columns"][2] == {"name": "color", "type": "category", "categories": VOCABULARY}
        parity = next(c for c in v.gate_report["checks"] if c["name"] == "onnx_parity")
        assert parity["applicable"] is False
        assert h.registry.audit_log("churn", limit=1)[0].detail["reason"] == "trained by the data team"
        reference = load_reference(h, "churn", 1)  # what monitoring compares live windows with
        assert reference.height > 300 and reference[SCORE].is_between(0, 1).all()
        assert reference["at"].min() >= START + timedelta(days=12)  # the held-out last eval_days days

    assert cli(home, capsys, "promote", "churn", "1").code == 0
    sample = outside.later.head(25)
    records = sample.select(FEATURES).to_dicts()
    predicted = cli(home, capsys, "predict", "churn", "--json", json.dumps(records))
    assert predicted.code == 0, predicted.err
    served = [p["probability"] for p in json.loads(predicted.out)["predictions"]]
    np.testing.assert_allclose(served, outside.booster.predict(encode(sample).astype(np.float64)), atol=1e-5)

    reproduced = cli(home, capsys, "reproduce", "churn", "1")
    assert reproduced.code == 1 and reproduced.out == ""
    assert (
        reproduced.err.startswith("error: v1 was registered from an outside ONNX file; there is no recipe to reproduce")
        and reproduced.err.count("\n") == 1
    )

    _log_traffic(home, outside.later, served_by=outside.booster)
    from appliance.monitoring.monitor import monitor

    with Home(home) as h:
        report = monitor(h, "churn")
        assert report.version == 1 and report.windows == 2
        pipeline = store.results(h, "churn", check="pipeline")
        assert pipeline.filter(method="runs")["value"].to_list() == [0.0]  # a registration is no training run
    shown = cli(home, capsys, "monitor", "churn", "--check", "drift")
    assert shown.code == 0, shown.err
    assert "x1" in shown.out and "color" in shown.out


def _log_traffic(home: Path, frame: pl.DataFrame, served_by: lgb.Booster) -> None:
    """The later days as the server would have logged them for v1, each with its label."""
    scores = served_by.predict(encode(frame).astype(np.float64))
    log = PredictionStore(Layout(home).predictions_db)
    try:
        log.append(
            [
                (
                    f"r{i}",
                    0,
                    "churn",
                    1,
                    "production",
                    None,
                    row["at"].timestamp() + 1,
                    row["at"].isoformat().replace("+00:00", "Z"),
                    None,
                    json.dumps({k: row[k] for k in FEATURES}),
                    float(p),
                    int(p >= 0.5),
                    1.0,
                    200,
                    None,
                    None,
                )
                for i, (row, p) in enumerate(zip(frame.iter_rows(named=True), scores))
            ]
        )
        log.attach_feedback("churn", [(f"r{i}", 0, float(y)) for i, y in enumerate(frame["churned"])])
    finally:
        log.close()


def test_a_lightgbm_file_gets_the_parity_gate_and_the_python_api_scores_on_a_file(outside, home, capsys):
    from appliance import register_model
    from appliance.training.registration import register_onnx

    result = cli(
        home,
        capsys,
        "register",
        "churn",
        "--lightgbm",
        outside.folder / "model.txt",
        "--categories",
        outside.folder / "categories.json",
    )
    assert result.code == 0, result.err
    check = next(line for line in result.out.splitlines() if line.startswith("gate onnx_parity"))
    assert check.startswith("gate onnx_parity: pass — max |ONNX − native| probability"), check
    with Home(home) as h:
        v = h.registry.version("churn", 1)
        assert v.params["source"].startswith("lightgbm file ") and v.params["format"] == "lightgbm"

    outside.later.write_csv(home.parent / "later.csv")
    registration = register_onnx(
        home,
        "churn",
        outside.folder / "model.onnx",
        eval_data=home.parent / "later.csv",
        categories={"color": VOCABULARY},
    )
    assert registration.version.version == 2 and registration.gates.passed
    assert registration.eval_rows == outside.later.height and registration.quarantined == 0
    assert register_model is not None
    # Without --categories the vocabulary is learnt (sorted): codes the model was not trained with.
    learnt = register_onnx(home, "churn", outside.folder / "model.onnx")
    assert learnt.version.feature_schema["columns"][2]["categories"] == sorted(VOCABULARY)
    assert learnt.categories_from.startswith("from the data contract's allowed_values")


def test_a_mismatched_onnx_is_one_error_line_and_registers_nothing(outside, home, capsys):
    result = cli(home, capsys, "register", "churn", "--onnx", outside.folder / "narrow.onnx")
    assert result.code == 1 and result.out == ""
    assert result.err == (
        "error: the ONNX input 'features' is 3 features wide, but 'churn' has 4 features: "
        "x1, x2, color, flag (in the spec's order)\n"
    )
    for name, words in (("zipmap.onnx", "(a ZipMap)"), ("misnamed.onnx", "is named 'input', not 'features'")):
        result = cli(home, capsys, "register", "churn", "--onnx", outside.folder / name)
        assert result.code == 1 and result.err.startswith("error: ") and words in result.err, result.err
        assert result.err.count("\n") == 1
    with Home(home) as h:
        assert h.registry.versions("churn") == []


def _graph(input_type: int, output: str) -> bytes:
    """A hand-made ONNX model: [rows, 4] → [rows, 2] raw scores (a MatMul, no sigmoid)."""
    weights = numpy_helper.from_array(
        np.ones((4, 2), dtype=np.float32 if input_type == TensorProto.FLOAT else np.float64), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], [output])],
        "raw",
        [helper.make_tensor_value_info("features", input_type, [None, 4])],
        [helper.make_tensor_value_info(output, input_type, [None, 2])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]).SerializeToString()


@pytest.mark.parametrize(
    "input_type, output, words",
    [
        (TensorProto.DOUBLE, "probabilities", "is tensor(double), not tensor(float)"),
        (TensorProto.FLOAT, "scores", "has no output 'probabilities' (it has scores)"),
        (TensorProto.FLOAT, "probabilities", "is not a probability: on the evaluation rows it ranges from"),
    ],
)
def test_the_contract_names_each_mismatch(outside, home, input_type, output, words):
    path = home.parent / "raw.onnx"
    path.write_bytes(_graph(input_type, output))
    with pytest.raises(InvalidInput, match=words.replace("(", r"\(").replace(")", r"\)")):
        from appliance.training.registration import register_onnx

        register_onnx(home, "churn", path, categories={"color": VOCABULARY})
    with Home(home) as h:
        assert h.registry.versions("churn") == []

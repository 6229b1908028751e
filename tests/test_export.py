"""`appliance export` and `appliance ingest-log`: a version written as Triton and MLflow serve it, scoring as the
appliance does from the files alone, and the other engine's answers taken back into the prediction log, where the
monitor job and feedback work on them.

Over the sample (binary, string keys, stored and derived features) and a multiclass model unlike it: four text
classes, integer channel codes, no entity, text times in a CSV (``task_data.write_tickets``), trained here once.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
import pytest
import yaml

from appliance.cli.export import EXPORT_FORMATS
from appliance.export.formats import FORMATS
from appliance.export.triton_repository import TRITON_TYPES
from appliance.features.online import OnlineFeatures
from appliance.home import Home
from appliance.spec import load_spec
from appliance.training.pipeline import train
from tests.conftest import SAMPLE_RECORD, cli, ok, running_server
from tests.task_data import write_tickets


@pytest.fixture(scope="module")
def tickets(tmp_path_factory) -> SimpleNamespace:
    """The tickets model trained once and promoted (v1), in a data directory of its own."""
    folder = tmp_path_factory.mktemp("tickets")
    spec_path = write_tickets(folder / "data", per_day=120, days=10)
    with Home(folder / "home") as home:
        spec = load_spec(spec_path)
        home.add_model(spec)
        train(home, spec)
        home.registry.promote("triage", 1)
    return SimpleNamespace(home=folder / "home", data=folder / "data")


def encode(document: dict, records: list[dict]) -> np.ndarray:
    """The model's input rows built from model.json alone, as a team serving it elsewhere would build them."""
    rows = []
    for record in records:
        row = []
        for column in document["input"]["columns"]:
            value = record.get(column["name"])
            if value is None:
                row.append(np.nan)
            elif column["type"] == "category":
                text = str(value)
                row.append(column["categories"].index(text) if text in column["categories"] else np.nan)
            else:
                row.append(float(value))
        rows.append(row)
    return np.array(rows, dtype=np.float32)


def run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the LightGBM converter's label output declares one row; it warns per call
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"features": x})))


def logged_rows(home: Path) -> int:
    """Rows in the data directory's prediction log (none before anything was logged)."""
    if not (home / "predictions.db").exists():
        return 0
    with sqlite3.connect(home / "predictions.db") as db:
        return db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


def export_all(home: Path, model: str, version: int, tmp_path: Path) -> dict[str, Path]:
    folders = {}
    for fmt in EXPORT_FORMATS:
        folders[fmt] = tmp_path / f"{model}-{fmt}"
        ok(home, "export", model, str(version), "--format", fmt, "--out", str(folders[fmt]))
    return folders


def exported_onnx(folders: dict[str, Path], model: str, version: int) -> dict[str, Path]:
    return {
        "onnx-bundle": folders["onnx-bundle"] / "model.onnx",
        "triton": folders["triton"] / model / str(version) / "model.onnx",
        "mlflow": folders["mlflow"] / "model.onnx",
    }


def probabilities(fmt: str, outputs: dict[str, np.ndarray], classes: list[str]) -> np.ndarray:
    if fmt == "mlflow":  # a column per class, as MLflow's pyfunc returns a table
        return np.hstack([outputs[f"probability_{c}"] for c in classes])
    return outputs["probabilities"]


def test_the_formats_the_cli_offers_are_the_ones_written():
    assert set(EXPORT_FORMATS) == set(FORMATS)


def test_binary_export_scores_as_the_appliance_answers(home_dir: Path, tmp_path: Path):
    folders = export_all(home_dir, "fraud", 1, tmp_path)
    document = json.loads((folders["onnx-bundle"] / "model.json").read_text())
    records = [
        SAMPLE_RECORD,
        SAMPLE_RECORD | {"user_id": "u03649", "amount": 12.5, "merchant_category": "grocery", "is_foreign": False},
        SAMPLE_RECORD | {"user_id": "u00007", "merchant_category": "never-seen", "hour": 23},
    ]
    answers = json.loads(ok(home_dir, "predict", "fraud", "--json", json.dumps(records)))["predictions"]
    with Home(home_dir) as home:  # the stored features the engine's side would look up for each request
        spec = home.spec("fraud")
        online = OnlineFeatures(home.online, "fraud", spec.features)
        completed = online.complete(records)
    x = encode(document, completed)
    for fmt, path in exported_onnx(folders, "fraud", 1).items():
        scores = probabilities(fmt, run(path, x), ["0", "1"])[:, 1]
        assert scores == pytest.approx([a["probability"] for a in answers], abs=1e-6), fmt
    # and on the held-out rows the reference keeps, the scores the version had on them
    reference = pl.read_parquet(folders["triton"] / "reference.parquet")
    onnx_scores = run(folders["onnx-bundle"] / "model.onnx", encode(document, reference.to_dicts()))
    assert onnx_scores["probabilities"][:, 1] == pytest.approx(reference["_score"].to_numpy(), abs=1e-6)
    assert document["task"] == {"kind": "binary", "classes": [0, 1], "threshold": 0.5}
    features = json.loads((folders["mlflow"] / "features.json").read_text())
    assert features["entity_key"] == "user_id" and [a["name"] for a in features["aggregations"]][:2] == [
        "tx_count_1h",
        "amount_sum_1h",
    ]


def test_multiclass_export_scores_as_the_appliance_answers(tickets, tmp_path: Path):
    folders = export_all(tickets.home, "triage", 1, tmp_path)
    document = json.loads((folders["mlflow"] / "model.json").read_text())
    classes = document["task"]["classes"]
    assert sorted(classes) == ["abuse", "billing", "sales", "tech"]
    live = pl.read_csv(tickets.data / "live.csv").head(20)
    records = [
        {"opened": r["opened"], "words": r["words"], "channel": r["channel"], "attachment": r["attachment"] == "true"}
        | {"hour": r["hour"]}
        for r in live.iter_rows(named=True)
    ]
    answers = json.loads(ok(tickets.home, "predict", "triage", "--json", json.dumps(records)))["predictions"]
    expected = np.array([[a["probabilities"][c] for c in classes] for a in answers])
    x = encode(document, records)
    for fmt, path in exported_onnx(folders, "triage", 1).items():
        assert probabilities(fmt, run(path, x), classes) == pytest.approx(expected, abs=1e-6), fmt
    channel = next(c for c in document["input"]["columns"] if c["name"] == "channel")
    assert channel["categories"] == ["10", "20", "30"] and channel["source"] == "request"


def triton_config(text: str) -> dict[str, list[dict]]:
    """config.pbtxt's inputs and outputs: name, data_type, dims (what this test reads of the format)."""
    found: dict[str, list[dict]] = {}
    for part, body in re.findall(r"^(input|output) \[\n(.*?)\n\]", text, re.S | re.M):
        found[part] = [
            {
                "name": json.loads(re.search(r"name: (\".*?\")", t).group(1)),
                "data_type": re.search(r"data_type: (\w+)", t).group(1),
                "dims": [int(d) for d in re.search(r"dims: \[ ([^\]]*) \]", t).group(1).split(",")],
            }
            for t in body.split("},")
        ]
    return found


def test_the_triton_config_names_every_tensor_of_its_graph(tickets, home_dir: Path, tmp_path: Path):
    for home, model in ((home_dir, "fraud"), (tickets.home, "triage")):
        out = tmp_path / model
        ok(home, "export", model, "1", "--format", "triton", "--out", str(out))
        text = (out / model / "config.pbtxt").read_text()
        assert f'name: "{model}"' in text and 'platform: "onnxruntime_onnx"' in text
        assert "max_batch_size: 1000" in text and "dynamic_batching {" in text
        config = triton_config(text)
        graph = onnx.load(out / model / "1" / "model.onnx").graph
        for part, tensors in (("input", graph.input), ("output", graph.output)):
            declared = {
                t.name: (
                    TRITON_TYPES[onnx.TensorProto.DataType.Name(t.type.tensor_type.elem_type)],
                    [d.dim_value for d in t.type.tensor_type.shape.dim][1:],
                )
                for t in tensors
            }
            assert {c["name"]: (c["data_type"], c["dims"]) for c in config[part]} == declared
        assert not (out / model / "reference.parquet").exists() and (out / "reference.parquet").is_file()
    assert config["input"] == [{"name": "features", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [4]}]


def test_the_mlflow_model_lists_the_features_in_order(tickets, tmp_path: Path):
    out = tmp_path / "mlflow"
    ok(tickets.home, "export", "triage", "1", "--format", "mlflow", "--out", str(out))
    mlmodel = yaml.safe_load((out / "MLmodel").read_text())
    pyfunc, flavor = mlmodel["flavors"]["python_function"], mlmodel["flavors"]["onnx"]
    assert pyfunc["loader_module"] == "mlflow.onnx" and pyfunc["data"] == "model.onnx"
    assert flavor["data"] == "model.onnx" and flavor["onnx_version"] == onnx.__version__
    inputs = json.loads(mlmodel["signature"]["inputs"])
    document = json.loads((out / "model.json").read_text())
    assert [i["name"] for i in inputs] == [c["name"] for c in document["input"]["columns"]]
    assert [i["name"] for i in inputs] == ["words", "channel", "attachment", "hour"]
    assert {i["type"] for i in inputs} == {"double"}
    outputs = json.loads(mlmodel["signature"]["outputs"])
    assert [o["name"] for o in outputs] == [f"probability_{c}" for c in document["task"]["classes"]]
    example = json.loads((out / "input_example.json").read_text())
    assert example["columns"] == [i["name"] for i in inputs] and len(example["data"]) == 1
    assert mlmodel["saved_input_example_info"]["artifact_path"] == "input_example.json"
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        assert (out / name).is_file()
    assert yaml.safe_load((out / "python_env.yaml").read_text())["dependencies"] == ["-r requirements.txt"]
    scored = run(out / "model.onnx", np.array(example["data"], dtype=np.float32))
    assert sum(float(v[0, 0]) for v in scored.values()) == pytest.approx(1.0, abs=1e-5)


def test_export_refuses_what_it_cannot_write(home_dir: Path, tmp_path: Path):
    exports = tmp_path / "exports"
    full = exports / "full"
    full.mkdir(parents=True)
    (full / "keep.txt").write_text("mine")
    for args, says in (
        (("fraud", "1", "--format", "torchscript"), "unknown export format 'torchscript'"),
        (("fraud", "9", "--format", "triton"), "has no version 9"),
        (("nosuch", "1", "--format", "triton"), "unknown model 'nosuch'"),
        (("fraud", "1", "--format", "mlflow", "--out", str(full)), "is not empty"),
    ):
        code, out, err = cli(home_dir, "export", *args, *(() if "--out" in args else ("--out", str(exports / "x"))))
        assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert sorted(p.name for p in exports.iterdir()) == ["full"]  # nothing half-written beside it
    assert (full / "keep.txt").read_text() == "mine"
    empty = exports / "empty"
    empty.mkdir()
    ok(home_dir, "export", "fraud", "2", "--format", "onnx-bundle", "--out", str(empty))
    assert sorted(p.name for p in empty.iterdir()) == [
        "README.md",
        "features.json",
        "model.json",
        "model.onnx",
        "reference.parquet",
    ]


def engine_log(tickets, folder: Path, rows: int = 300) -> list[dict]:
    """What an engine serving the exported tickets model answered for the live days: JSON lines records of the
    request's fields and the exported graph's probabilities, as a gateway in front of Triton would log them."""
    document = json.loads((folder / "model.json").read_text())
    live = pl.read_csv(tickets.data / "live.csv").head(rows)
    fields = ["opened", "words", "channel", "attachment", "hour"]
    records = [
        {f: r[f] for f in fields} | {"attachment": r["attachment"] == "true"} for r in live.iter_rows(named=True)
    ]
    scored = run(folder / "model.onnx", encode(document, records))["probabilities"]
    return [
        record
        | {"request_time": record["opened"].replace(" ", "T") + "Z", "request_id": f"triton-{i}", "latency_ms": 3.5}
        | {"probabilities": [float(p) for p in scored[i]], "ticket": i}
        for i, record in enumerate(records)
    ]


def test_an_engines_answers_are_monitored_and_take_feedback(tickets, tmp_path: Path):
    home = tmp_path / "home"
    shutil.copytree(tickets.home, home)
    ok(home, "export", "triage", "1", "--format", "onnx-bundle", "--out", str(tmp_path / "bundle"))
    log = engine_log(tickets, tmp_path / "bundle")
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in log))
    said = ok(home, "ingest-log", "triage", str(path))
    assert f"logged {len(log)} answered rows of 'triage' (v1: {len(log)})" in said
    assert "not logged (not fields the spec declares): ticket" in said
    with sqlite3.connect(home / "predictions.db") as db:
        rows = db.execute(
            "SELECT request_id, version, arm, status, label, probabilities, features_json FROM predictions"
        ).fetchall()
    assert len(rows) == len(log)
    first = next(r for r in rows if r[0] == "triton-0")
    assert first[1:4] == (1, "production", 200)
    assert json.loads(first[5]) == pytest.approx(log[0]["probabilities"])
    assert first[4] == int(np.argmax(log[0]["probabilities"]))
    assert "ticket" not in json.loads(first[6]) and json.loads(first[6])["channel"] == log[0]["channel"]
    ok(home, "jobs", "run", "monitor", "triage")
    results = json.loads(ok(home, "monitor", "triage", "--json"))
    methods = {r["method"] for r in results}
    assert {"ks", "psi"} & methods and "requests" in methods
    with running_server(home) as server:  # feedback names the engine's request ids
        outcomes = [{"request_id": f"triton-{i}", "outcome": "tech"} for i in range(40)]
        answer = server.client.post("/v1/models/triage/feedback", json={"outcomes": outcomes})
    assert answer.status_code == 200 and answer.json()["accepted"] == 40
    code, _, err = cli(home, "ingest-log", "triage", str(path))  # the same file again: refused, nothing added
    assert code == 1 and "already in the prediction log" in err and err.count("\n") == 1
    assert logged_rows(home) == len(log)


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (lambda rows: rows[:2] + ['{"request_time": '], "answers.jsonl line 3 is not JSON"),
        (lambda rows: rows[:1] + [json.dumps(json.loads(rows[1]) | {"words": "many"})], "row 2: feature 'words'"),
        (lambda rows: [json.dumps(json.loads(rows[0]) | {"probabilities": [0.5, 0.5]})], "4 probabilities"),
        (
            lambda rows: [json.dumps({k: v for k, v in json.loads(rows[0]).items() if k != "request_time"})],
            "row 1: no 'request_time'",
        ),
        (lambda rows: rows[:1] + [json.dumps(json.loads(rows[1]) | {"version": 7})], "has no version 7"),
        (lambda rows: rows[:2] + rows[:1], "is in the file twice"),
    ],
)
def test_a_malformed_log_is_one_error_and_writes_nothing(tickets, tmp_path: Path, broken, says):
    home = tmp_path / "home"
    shutil.copytree(tickets.home, home)
    ok(home, "export", "triage", "1", "--format", "onnx-bundle", "--out", str(tmp_path / "bundle"))
    lines = [json.dumps(r) for r in engine_log(tickets, tmp_path / "bundle", rows=3)]
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(broken(lines)) + "\n")
    code, out, err = cli(home, "ingest-log", "triage", str(path))
    assert code == 1 and out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert says in err and "nothing was written" in err, err
    assert logged_rows(home) == 0


def test_a_csv_log_of_the_binary_model_with_its_stored_features_ingests(home_dir: Path, tmp_path: Path):
    """A CSV as a gateway in front of MLflow writes it: booleans as 0/1, each class's probability a column; a
    truncated Parquet is refused with one line."""
    frame = pl.DataFrame(
        {
            "request_time": ["2026-10-16T09:30:01Z", "2026-10-16T09:31:00Z"],
            "user_id": ["u00042", "u03649"],
            "event_time": ["2026-10-16T09:30:00Z", "2026-10-16T09:30:59Z"],
            "amount": [950.0, 12.0],
            "merchant_category": ["jewelry", "grocery"],
            "hour": [9, 9],
            "is_foreign": [1, 0],
            "probability_0": [0.2, 0.99],  # the columns MLflow's pyfunc answers with
            "probability_1": [0.8, 0.01],
            "gateway_host": ["a", "b"],
        }
    )
    frame.write_csv(tmp_path / "answers.csv")
    said = ok(home_dir, "ingest-log", "fraud", str(tmp_path / "answers.csv"))
    assert "logged 2 answered rows of 'fraud' (v1: 2)" in said
    assert "not logged (not fields the spec declares): gateway_host\n" in said
    with sqlite3.connect(home_dir / "predictions.db") as db:
        logged = db.execute("SELECT entity_key, probability, label FROM predictions ORDER BY probability").fetchall()
    assert logged == [("u03649", 0.01, 0), ("u00042", 0.8, 1)]
    (tmp_path / "cut.parquet").write_bytes(b"PAR1 not a whole file")
    code, _, err = cli(home_dir, "ingest-log", "fraud", str(tmp_path / "cut.parquet"))
    assert code == 1 and err.count("\n") == 1 and "could not be read as PARQUET" in err

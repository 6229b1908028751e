"""Serving every task: multiclass models answer their class and each class's probability, regression models
their value; the log, feedback, the retrain batch, the OpenAPI schema and /metrics follow each model's task.

The models are real LightGBM boosters trained here on generated data unlike the sample, exported to ONNX as the
pipeline exports them (classifiers ``probabilities`` [n, k], regression ``value`` [n, 1]), registered,
promoted and served by a real server.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from types import SimpleNamespace

import lightgbm as lgb
import msgspec
import numpy as np
import polars as pl
import pytest

from appliance.cli import main
from appliance.data.declared import model_task
from appliance.deployment import deployments
from appliance.errors import Conflict
from appliance.features.encoding import FeatureSchema
from appliance.home import Home
from appliance.layout import Layout
from appliance.serving.batching import Arrivals, MicroBatcher, NotEncoded
from appliance.serving.models import load_version
from appliance.spec import load_spec
from appliance.training import onnx_export
from appliance.training.feedback_batch import labelled_batch
from appliance.training.runs import finish_run, start_run
from storage.prediction_log import PredictionStore
from tests.conftest import running_server
from tests.own_data import spec_text

START = datetime(2026, 4, 6, tzinfo=UTC)
COLORS = ["red", "green", "blue"]

# Each model, its target's task lines, added to the garden spec's last table ([target]). species declares
# its classes in an order of its own (not the contract's); grade reads its integer classes from the contract.
TARGETS = {
    "species": 'task = "multiclass"\nclasses = ["dog", "cat", "bird"]',
    "grade": 'task = "multiclass"',
    "price": 'task = "regression"',
    "bought": "",
}
RECORDS = [
    {"x1": 1.4, "x2": 8.5, "color": "red"},
    {"x1": -1.2, "x2": 1.0, "color": "blue"},
    {"x1": 0.1, "x2": 5.0, "color": "green"},
]


def garden(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.uniform(0, 10, rows)
    color = rng.choice(COLORS, rows)
    noisy = x1 + rng.normal(scale=0.3, size=rows)
    return pl.DataFrame(
        {
            "at": [START + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 10 * 86400, rows))],
            "x1": x1,
            "x2": x2,
            "color": color,
            "species": np.where(noisy < -0.5, "bird", np.where(noisy < 0.5, "cat", "dog")),
            "grade": np.where(x2 < 3.3, 3, np.where(x2 < 6.6, 5, 7)),
            "price": 10 + 5 * x1 + x2 + 2 * (color == "blue") + rng.normal(scale=0.5, size=rows),
            "bought": (noisy > 0).astype(np.int64),
        }
    )


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> SimpleNamespace:
    """A data directory with four models over one file, each v1 trained here, registered and promoted:
    species and grade (multiclass), price (regression), bought (binary)."""
    folder = tmp_path_factory.mktemp("tasks")
    frame = garden(900, seed=1)
    frame.write_parquet(folder / "garden.parquet")
    (folder / "contract.toml").write_text(spec_text("garden", "contract.toml"))
    home, boosters, schemas = folder / "home", {}, {}
    with Home(home) as h:
        for name, target in TARGETS.items():
            path = folder / f"{name}.toml"
            path.write_text(spec_text("garden", "spec.toml", name=name) + target + "\n")
            spec = load_spec(path)
            h.add_model(spec)
            task = model_task(spec)
            schema = FeatureSchema.learn(spec.model_features, frame, spec.features)
            objective = {
                "binary": {"objective": "binary"},
                "regression": {"objective": "regression"},
                "multiclass": {"objective": "multiclass", "num_class": len(task.classes)},
            }[task.kind]
            booster = lgb.train(
                {**objective, "verbosity": -1, "num_leaves": 7, "num_threads": 1, "seed": 3, "deterministic": True},
                lgb.Dataset(schema.encode_frame(frame), task.labels(frame[name].to_list())),
                num_boost_round=20,
            )
            boosters[name], schemas[name] = booster, schema
            register(h, name, onnx_export.lightgbm_to_onnx(booster), schema)
            h.registry.promote(name, 1, actor="test")
    return SimpleNamespace(folder=folder, home=home, boosters=boosters, schemas=schemas)


def register(home: Home, name: str, onnx_bytes: bytes, schema: FeatureSchema) -> int:
    """A version of ``name`` scoring with these ONNX bytes (a run trained it here, outside the pipeline)."""
    run_id = f"test-{name}-{uuid.uuid4().hex[:12]}"
    start_run(home.conn, run_id, name, "train", {}, "test")
    finish_run(home.conn, run_id, status="succeeded")
    return home.registry.register_version(
        name,
        status="registered",
        artifact_sha256=home.artifacts.put(onnx_bytes),
        feature_schema=msgspec.to_builtins(schema),
        metrics={},
        params={},
        gate_report={"checks": []},
        data_version="generated",
        code_version="test",
        run_id=run_id,
    ).version


@pytest.fixture
def server(origin, tmp_path):
    shutil.copytree(origin.home, tmp_path / "home")
    with running_server(tmp_path / "home") as running:
        deadline = time.monotonic() + 20
        while running.client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, running.client.get("/readyz").text
            time.sleep(0.05)
        yield running


def native(origin, name: str, records: list[dict]) -> np.ndarray:
    """The booster's own output for request records, encoded as serving encodes them."""
    frame = pl.DataFrame(records)
    return origin.boosters[name].predict(origin.schemas[name].encode_frame(frame).astype(np.float64))


def test_each_task_answers_in_its_own_terms_one_record_or_several(origin, server):
    c = server.client
    for name, classes in (("species", ["dog", "cat", "bird"]), ("grade", [3, 5, 7])):
        expected = native(origin, name, RECORDS)
        for record, probabilities in zip(RECORDS, expected):
            body = c.post(f"/v1/models/{name}/predict", json=record).json()
            assert set(body) == {"model", "version", "request_id", "class", "probabilities"}, body
            assert list(body["probabilities"]) == [str(k) for k in classes]  # in the declared order
            answered = np.array(list(body["probabilities"].values()))
            np.testing.assert_allclose(answered, probabilities, atol=1e-5)
            assert answered.sum() == pytest.approx(1, abs=1e-5)
            assert body["class"] == classes[int(np.argmax(answered))]
            assert type(body["class"]) is type(classes[0])  # "cat" as text, 5 as an integer: as declared
        several = c.post(f"/v1/models/{name}/predict", json=RECORDS).json()["predictions"]
        assert [p["class"] for p in several] == [classes[int(i)] for i in np.argmax(expected, axis=1)]
        assert all(set(p) == {"class", "probabilities"} for p in several)

    values = native(origin, "price", RECORDS)
    for record, value in zip(RECORDS, values):
        body = c.post("/v1/models/price/predict", json=record).json()
        assert set(body) == {"model", "version", "request_id", "value"}
        assert body["value"] == pytest.approx(value, abs=1e-4)
    several = c.post("/v1/models/price/predict", json=RECORDS).json()["predictions"]
    np.testing.assert_allclose([p["value"] for p in several], values, atol=1e-4)

    binary = c.post("/v1/models/bought/predict", json=RECORDS[0]).json()  # as ever
    assert set(binary) == {"model", "version", "request_id", "probability", "label"}
    assert binary["label"] == int(binary["probability"] >= 0.5)


def test_a_micro_batch_answers_each_record_with_its_own_row_of_outputs(origin, tmp_path):
    shutil.copytree(origin.home, tmp_path / "home")
    with Home(tmp_path / "home") as home:
        models = {name: load_version(home, name, 1) for name in ("species", "price")}

    calls = []

    def run(model, x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return model.run(x)

    async def batched(model) -> list:
        arrivals = Arrivals()
        batcher = MicroBatcher(model.encode, partial(run, model), max_batch=8, max_wait_s=0.05, arrivals=arrivals)
        arrivals.count = len(RECORDS) + 1  # bodies on their way in: the first rows wait for company
        futures = []
        for record in [*RECORDS, {"x1": "many"}]:
            arrivals.count -= 1
            futures.append(batcher.score(record))
        return await asyncio.gather(*futures, return_exceptions=True)

    for name, model in models.items():
        *rows, bad = asyncio.run(batched(model))
        assert isinstance(bad, NotEncoded)  # the record that cannot be encoded fails alone
        if name == "species":
            assert all(type(row) is list and len(row) == 3 for row in rows)  # a row of class probabilities each
        np.testing.assert_allclose(rows, native(origin, name, RECORDS), atol=1e-5)
    assert calls == [3, 3]  # one ONNX Runtime call per model for the batch's three good records


def test_concurrent_requests_each_get_their_own_answer(origin, server):
    records = [{"x1": float(x), "x2": 5.0, "color": "blue"} for x in np.linspace(-2, 2, 48)]
    with ThreadPoolExecutor(12) as pool:
        for name in ("species", "price"):
            url = f"/v1/models/{name}/predict"
            answers = list(pool.map(lambda r, url=url: server.client.post(url, json=r), records))
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
            expected = native(origin, name, records)
            if name == "species":
                got = [list(a.json()["probabilities"].values()) for a in answers]
            else:
                got = [a.json()["value"] for a in answers]
            np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_log_holds_each_tasks_columns_and_feedback_is_typed_by_task(origin, server):
    c = server.client
    ids = {}
    for name in ("species", "grade", "price", "bought"):
        ids[name] = c.post(f"/v1/models/{name}/predict", json=RECORDS).json()
    fed = {
        "species": [
            {"request_id": ids["species"]["request_id"], "position": 0, "outcome": "cat"},
            {"request_id": ids["species"]["request_id"], "position": 1, "outcome": "bird"},
        ],
        "grade": [
            {"request_id": ids["grade"]["request_id"], "position": 0, "outcome": 5},
            {"request_id": ids["grade"]["request_id"], "position": 1, "outcome": "7"},
        ],  # its text reads too
        "price": [
            {"request_id": ids["price"]["request_id"], "position": 0, "outcome": 12.5},
            {"request_id": ids["price"]["request_id"], "position": 2, "outcome": -3},
        ],
        "bought": [
            {"request_id": ids["bought"]["request_id"], "position": 0, "outcome": True},
            {"request_id": ids["bought"]["request_id"], "position": 1, "outcome": 0},
        ],
    }
    for name, outcomes in fed.items():
        answer = c.post(f"/v1/models/{name}/feedback", json={"outcomes": outcomes})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 2, "unknown": []}

    store = PredictionStore(Layout(server.home).predictions_db)
    try:

        def logged(name: str) -> list:
            return store.conn.execute(
                "SELECT p.probability, p.label, p.value, p.probabilities, f.outcome FROM predictions p "
                "LEFT JOIN feedback f USING (request_id, position) WHERE p.request_id = ? ORDER BY p.position",
                (ids[name]["request_id"],),
            ).fetchall()

        species = logged("species")
        for row, answer in zip(species, ids["species"]["predictions"]):
            probabilities = list(answer["probabilities"].values())
            assert json.loads(row["probabilities"]) == probabilities  # every class's, in class order
            assert row["label"] == ["dog", "cat", "bird"].index(answer["class"])
            assert row["probability"] == max(probabilities) and row["value"] is None
        assert [r["outcome"] for r in species] == [1.0, 2.0, None]  # cat, bird: their indices
        assert [r["outcome"] for r in logged("grade")] == [1.0, 2.0, None]
        price = logged("price")
        assert [r["value"] for r in price] == [p["value"] for p in ids["price"]["predictions"]]
        assert all(r["probability"] is None and r["label"] is None and r["probabilities"] is None for r in price)
        assert [r["outcome"] for r in price] == [12.5, None, -3.0]
        bought = logged("bought")
        assert [r["outcome"] for r in bought] == [1.0, 0.0, None]
        assert all(r["value"] is None and r["probabilities"] is None for r in bought)
    finally:
        store.close()

    # The retrain batch turns the outcomes back into the target's values, typed as the contract types them.
    with Home(server.home) as home:
        targets = {
            name: labelled_batch(home, home.spec(name))[0].sort("x1")[name].to_list()
            for name in ("species", "grade", "price")
        }
    # by x1: species bird (record 1), cat (record 0); grade 7, 5; price -3 (record 2), 12.5 (record 0)
    assert targets == {"species": ["bird", "cat"], "grade": [7, 5], "price": [-3.0, 12.5]}
    assert [type(v) for v in targets["grade"]] == [int, int] and [type(v) for v in targets["price"]] == [float, float]


def test_a_shadow_candidate_logs_its_outputs_in_its_tasks_terms(server):
    with Home(server.home) as home:
        for name in ("species", "price"):
            artifact = home.registry.version(name, 1).artifact_sha256  # the same model: the same outputs
            v2 = register(
                home,
                name,
                home.artifacts.get(artifact),
                msgspec.convert(home.registry.version(name, 1).feature_schema, FeatureSchema),
            )
            deployments.start(home, name, "shadow", v2, actor="test")
    store = PredictionStore(Layout(server.home).predictions_db)
    try:
        for name in ("species", "price"):
            deadline, rows = time.monotonic() + 10, []
            while len(rows) < len(RECORDS) + 1:  # until the server has picked the deployment up and the rows are in
                assert time.monotonic() < deadline, f"no shadow rows for {name}"
                several = server.client.post(f"/v1/models/{name}/predict", json=RECORDS).json()["request_id"]
                one = server.client.post(f"/v1/models/{name}/predict", json=RECORDS[0]).json()["request_id"]
                time.sleep(0.1)  # the log's writer is asynchronous
                rows = store.conn.execute(
                    "SELECT s.probability, s.label, s.value, s.probabilities, p.probability AS served_probability, "
                    "p.label AS served_label, p.value AS served_value, p.probabilities AS served_probabilities "
                    "FROM shadow_scores s JOIN predictions p USING (request_id, position) WHERE request_id IN (?, ?)",
                    (several, one),
                ).fetchall()
            for row in rows:
                assert (row["probability"], row["label"], row["value"], row["probabilities"]) == (
                    row["served_probability"],
                    row["served_label"],
                    row["served_value"],
                    row["served_probabilities"],
                )
                if name == "species":
                    assert len(json.loads(row["probabilities"])) == 3 and row["value"] is None
                else:
                    assert row["value"] is not None and row["probabilities"] is None and row["label"] is None
    finally:
        store.close()


@pytest.mark.parametrize(
    "name, outcome, words",
    [
        (
            "species",
            "fish",
            ('"fish" is not an outcome of multiclass model \'species\'; send one of its classes: "dog", "cat", "bird"'),
        ),
        ("species", True, "true is not an outcome of multiclass model 'species'"),
        ("grade", 4, "4 is not an outcome of multiclass model 'grade'; send one of its classes: 3, 5, 7"),
        ("price", "12.5", "\"12.5\" is not an outcome of regression model 'price'; send the observed value"),
        ("price", False, "false is not an outcome of regression model 'price'"),
        ("bought", 0.5, "0.5 is not an outcome of binary model 'bought'; send 1 or 0 (or true or false)"),
        ("bought", "yes", "\"yes\" is not an outcome of binary model 'bought'"),
    ],
)
def test_an_outcome_of_the_wrong_kind_is_a_422_naming_its_field(server, name, outcome, words):
    c = server.client
    request_id = c.post(f"/v1/models/{name}/predict", json=RECORDS).json()["request_id"]
    good = {"species": "cat", "grade": 3, "price": 1.0, "bought": 1}[name]
    outcomes = [
        {"request_id": request_id, "position": 0, "outcome": good},
        {"request_id": request_id, "position": 1, "outcome": outcome},
        {"request_id": request_id, "position": 2, "outcome": outcome},
    ]
    answer = c.post(f"/v1/models/{name}/feedback", json={"outcomes": outcomes})
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert detail.startswith(f"outcomes[1].outcome: {words}") and detail.endswith(" (and 1 more like it)"), detail
    store = PredictionStore(Layout(server.home).predictions_db)
    try:
        assert store.conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0  # the request is refused whole
    finally:
        store.close()
    missing = c.post(f"/v1/models/{name}/feedback", json={"outcomes": [{"request_id": request_id, "outcome": None}]})
    assert missing.status_code == 422 and "$.outcomes[0].outcome" in missing.json()["detail"]
    assert f"for {model_kind(name)} model '{name}'" in missing.json()["detail"]


def model_kind(name: str) -> str:
    return {"species": "multiclass", "grade": "multiclass", "price": "regression", "bought": "binary"}[name]


def test_openapi_describes_each_models_answer_and_outcome_in_its_tasks_terms(server):
    paths = server.client.get("/schema/openapi.json").json()["paths"]
    generic = paths["/v1/models/{name}/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {variant["title"] for variant in generic["anyOf"]} == {
        f"{kind}: {many}"
        for kind in ("binary", "multiclass", "regression")
        for many in ("one record", "several records")
    }

    def answer(name: str) -> dict:
        operation = paths[f"/v1/models/{name}/predict"]["post"]
        assert "parameters" not in operation and operation["operationId"] == f"predict_{name}"
        one, several = operation["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"]
        assert several["properties"]["predictions"]["items"]["properties"] == {
            k: v for k, v in one["properties"].items() if k not in ("model", "version", "request_id")
        }
        return one

    def outcome(name: str) -> dict:
        body = paths[f"/v1/models/{name}/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return body["properties"]["outcomes"]["items"]["properties"]["outcome"]  # inline: no $defs to resolve

    species = answer("species")
    assert species["required"][-2:] == ["class", "probabilities"]
    assert species["properties"]["class"]["enum"] == ["dog", "cat", "bird"]
    assert list(species["properties"]["probabilities"]["properties"]) == ["dog", "cat", "bird"]
    assert answer("grade")["properties"]["class"]["enum"] == [3, 5, 7]
    assert answer("price")["properties"]["value"]["type"] == "number" and "class" not in answer("price")["properties"]
    assert answer("bought")["properties"]["label"]["enum"] == [0, 1]
    assert outcome("species")["enum"] == ["dog", "cat", "bird"] and outcome("grade")["enum"] == [3, 5, 7]
    assert outcome("price")["type"] == "number" and outcome("bought")["enum"] == [0, 1, True, False]
    page = server.client.get("/schema").text
    assert html.escape("'species' is a multiclass model of classes dog, cat, bird") in page
    assert "POST /v1/models/price/feedback" in page


def test_metrics_count_classes_and_sum_values(origin, server):
    c = server.client
    classes = [c.post("/v1/models/species/predict", json=r).json()["class"] for r in RECORDS * 2]
    values = [p["value"] for p in c.post("/v1/models/price/predict", json=RECORDS).json()["predictions"]]
    c.post("/v1/models/bought/predict", json=RECORDS[0])
    body = c.get("/metrics").text
    for label in set(classes):
        assert f'appliance_predicted_class_total{{model="species",class="{label}"}} {classes.count(label)}' in body
    assert 'model="grade"' not in body.split("# HELP appliance_predicted_class_total")[1].split("# HELP")[0]
    assert 'appliance_predicted_value_count{model="price"} 3' in body
    total = float(re.search(r'appliance_predicted_value_sum\{model="price"\} (\S+)', body).group(1))
    assert total == pytest.approx(sum(values))
    assert 'model="bought",class=' not in body and 'appliance_predicted_value_count{model="bought"}' not in body
    for line in body.splitlines():  # every sample line is NAME{labels} VALUE
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+", line), line


def test_a_version_whose_output_does_not_fit_its_task_is_refused_and_the_old_one_serves(origin, server, caplog):
    with Home(server.home) as home:
        bought = home.registry.version("bought", 1).artifact_sha256
        species = home.registry.version("species", 1).artifact_sha256
        v2 = register(home, "species", home.artifacts.get(bought), origin.schemas["species"])  # a binary model
        price_v2 = register(home, "price", home.artifacts.get(species), origin.schemas["price"])  # class probabilities
        with pytest.raises(
            Conflict,
            match=r"cannot serve species v2 as a multiclass model of 3 classes \(dog, cat, "
            r"bird\): its output 'probabilities' has 2 class probabilities per row",
        ):
            load_version(home, "species", v2)
        with pytest.raises(
            Conflict,
            match="cannot serve price v2 as a regression model: its ONNX has no output "
            "'value' \\(it has label, probabilities\\)",
        ):
            load_version(home, "price", price_v2)
        home.registry.promote("species", v2, actor="test")
    deadline = time.monotonic() + 10
    while "could not load species v2, still serving v1: cannot serve species v2" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.05)
    answer = server.client.post("/v1/models/species/predict", json=RECORDS[0])
    assert answer.status_code == 200 and answer.json()["version"] == 1 and "class" in answer.json()
    assert server.client.get("/readyz").json()["serving"]["species"] == 1


def test_the_cli_predicts_in_each_tasks_terms(origin, tmp_path, capsys):
    shutil.copytree(origin.home, tmp_path / "home")
    for name, keys in (
        ("species", {"class", "probabilities"}),
        ("price", {"value"}),
        ("bought", {"probability", "label"}),
    ):
        assert main(["--home", str(tmp_path / "home"), "predict", name, "--json", json.dumps(RECORDS[0])]) == 0
        body = json.loads(capsys.readouterr().out)
        assert set(body) == {"model", "version"} | keys
        served = native(origin, name, RECORDS[:1])[0]
        if name == "species":
            np.testing.assert_allclose(list(body["probabilities"].values()), served, atol=1e-5)
        elif name == "price":
            assert body["value"] == pytest.approx(served, abs=1e-4)

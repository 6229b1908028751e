"""Which ONNX Runtime provider serves each loaded version: the spec's `[serving] provider`, the automatic CPU
fallback (one warning naming the version and why) where CUDA is asked for and absent, and where the provider
shows: /metrics, GET /v1/models, `appliance models MODEL` and the gate report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from appliance.gateway.keys import create_key
from appliance.home import Home
from appliance.scoring import onnx_model
from appliance.serving.models import load_version
from appliance.spec import load_spec
from tests.conftest import SAMPLE_RECORD, ok, running_server


def with_provider(home_dir: Path, provider: str) -> None:
    """Register the model's spec again with `[serving] provider` set."""
    with Home(home_dir) as home:
        path = Path(home.registry.model("fraud").spec_path)
        variant = path.with_name(f"fraud-{provider}.toml")
        text = path.read_text()
        setting = f'provider = "{provider}"\n'
        variant.write_text(
            text.replace("[serving]\n", f"[serving]\n{setting}")
            if "[serving]\n" in text
            else f"{text}\n[serving]\n{setting}"
        )
        home.add_model(load_spec(variant), actor="test")


def warnings_about(caplog: pytest.LogCaptureFixture, which: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and which in r.getMessage()]


def test_provider_cpu_serves_on_the_cpu_and_says_so_in_metrics_and_the_models_route(home_dir):
    with_provider(home_dir, "cpu")
    with Home(home_dir) as home:
        _, token = create_key(home.conn, ["predict"])
    headers = {"authorization": f"Bearer {token}"}
    with running_server(home_dir) as server:
        answer = server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers=headers)
        assert answer.status_code == 200, answer.text
        [served] = server.client.get("/v1/models", headers=headers).json()
        metrics = server.client.get("/metrics", headers=headers).text
    assert served["provider"] == "CPUExecutionProvider"
    assert 'appliance_model_provider_info{model="fraud",version="1",provider="CPUExecutionProvider"} 1' in metrics
    assert 'provider: production v1 loads on CPUExecutionProvider here ([serving] provider = "cpu")' in ok(
        home_dir, "models", "fraud"
    )


def test_cuda_where_there_is_none_falls_back_to_the_cpu_with_one_warning_and_still_answers(
    home_dir, caplog, monkeypatch
):
    # ONNX Runtime as a machine without CUDA builds it (as CI's): on a GPU box too, this is the path tested
    cpu_only = [p for p in ort.get_available_providers() if p != onnx_model.CUDA]
    monkeypatch.setattr(ort, "get_available_providers", lambda: cpu_only)
    with_provider(home_dir, "cuda")
    with Home(home_dir) as home:
        _, token = create_key(home.conn, ["predict"])
    headers = {"authorization": f"Bearer {token}"}
    with caplog.at_level(logging.WARNING), running_server(home_dir) as server:
        answer = server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers=headers)
        time.sleep(0.3)  # several refreshes (every 50 ms): a loaded version is not loaded, nor warned of, again
        metrics = server.client.get("/metrics", headers=headers).text
    assert answer.status_code == 200 and 0 <= answer.json()["probability"] <= 1
    [warning] = warnings_about(caplog, "fraud v1")
    assert "serving on the CPU, not CUDA" in warning and "offers no CUDA provider" in warning
    assert 'appliance_model_provider_info{model="fraud",version="1",provider="CPUExecutionProvider"} 1' in metrics


def test_auto_keeps_a_lightgbm_model_on_the_cpu_and_would_move_a_neural_network(home_dir, caplog):
    with caplog.at_level(logging.WARNING), Home(home_dir) as home:  # the spec says nothing: "auto"
        loaded = load_version(home, "fraud", 1)
        trees = home.artifacts.get(home.registry.version("fraud", 1).artifact_sha256)
    assert loaded.provider == "CPUExecutionProvider" and not warnings_about(caplog, "fraud v1")
    assert not onnx_model.gains_from_cuda(trees)  # ONNX Runtime walks tree ensembles on the CPU only
    assert onnx_model.gains_from_cuda(_two_layers())


def test_the_gate_report_names_the_provider_the_latency_probe_ran_on(trained_home):
    with Home(trained_home) as home:
        report = home.registry.version("fraud", 1).gate_report
    assert report["latency_provider"] == "CPUExecutionProvider"
    [latency] = [c for c in report["checks"] if c["name"] == "latency_p99"]
    assert latency["detail"].startswith("p99 single-row ONNX inference on CPUExecutionProvider: ")


def _two_layers() -> bytes:
    """A small neural network's graph: MatMul, Relu, MatMul."""
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 8], [0.1] * 32)
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [8, 1], [0.1] * 8)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["value"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
        [w1, w2],
    )
    return onnx.helper.make_model(graph).SerializeToString()

"""Shared fixtures: a data directory trained once per session, copies of it, and a real server; the specs, models
brought to production, registered versions, raw requests, webhook receivers and interrupted fits that several test
files build alike."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import uvicorn

from appliance.cli import main
from appliance.config import bundled_spec_path
from appliance.features.online import materialize_model
from appliance.gateway.keys import create_key
from appliance.home import Home
from appliance.serving.app import ServingApp
from appliance.serving.server import server_config
from appliance.spec import load_spec
from appliance.training.pipeline import train

# A request carries the entity key, its event time and the request-time values; the stored features
# (account age, country, windowed aggregations) come from the online store.
SAMPLE_RECORD = {
    "user_id": "u00042",
    "event_time": "2026-10-16T09:30:00Z",
    "amount": 950.0,
    "merchant_category": "jewelry",
    "hour": 3,
    "is_foreign": True,
}


def small_spec(tmp: Path, **overrides: str) -> Path:
    """A copy of the bundled spec with fewer trees (fast tests) and optional line overrides."""
    text = bundled_spec_path().read_text()
    text = text.replace("num_boost_round = 300", "num_boost_round = 60")
    for old, new in overrides.items():
        assert old in text, old
        text = text.replace(old, new)
    folder = tmp / "spec"
    folder.mkdir(parents=True, exist_ok=True)
    for data in bundled_spec_path().parent.iterdir():
        if data.suffix in (".parquet", ".toml") and data.name != "fraud.toml":
            (folder / data.name).symlink_to(data)
    path = folder / "fraud.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the sample model trained twice (v1 in production, v2 candidate) and its
    features materialized."""
    root = tmp_path_factory.mktemp("trained-home")
    spec_path = small_spec(root)
    with Home(root / "home") as home:
        spec = load_spec(spec_path)
        home.add_model(spec)
        train(home, spec)
        home.registry.promote("fraud", 1)
        train(home, spec)
        materialize_model(home, spec)
    return root / "home"


@pytest.fixture
def home_dir(trained_home: Path, tmp_path: Path) -> Path:
    """A private copy of the trained data directory, free to change."""
    target = tmp_path / "home"
    shutil.copytree(trained_home, target)
    return target


class RunningServer:
    def __init__(self, url: str, home: Path, app: ServingApp):
        self.url = url
        self.home = home
        self.app = app
        self.client = httpx.Client(base_url=url, timeout=10)

    def admin_headers(self) -> dict[str, str]:
        """The header of a new admin key, once the server honours it (it reloads its keys as it refreshes)."""
        with Home(self.home) as home:
            headers = {"authorization": f"Bearer {create_key(home.conn, ['admin'])[1]}"}
        deadline = time.monotonic() + 10
        while self.client.get("/v1/alerts", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the server did not pick up the new key"
            time.sleep(0.02)
        return headers


def predict_request(model: str, body: bytes, *headers: bytes) -> bytes:
    """A whole HTTP/1.1 predict request, as bytes, for tests that speak to the server over a raw socket."""
    return (
        f"POST /v1/models/{model}/predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n".encode()
        + b"".join(h + b"\r\n" for h in headers)
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


@pytest.fixture
def server(home_dir: Path) -> Iterator[RunningServer]:
    """The real API under uvicorn on an ephemeral loopback port, over a private data directory."""
    with running_server(home_dir) as running:
        yield running


@contextlib.contextmanager
def running_server(home_dir: Path) -> Iterator[RunningServer]:
    """The real API under uvicorn on an ephemeral loopback port, over a data directory, until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(home_dir, "127.0.0.1", port, refresh_seconds=0.05)  # as `appliance serve` runs it
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    running = RunningServer(f"http://127.0.0.1:{port}", home_dir, config.app)
    try:
        yield running
    finally:
        running.client.close()
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def sliced_spec(tmp: Path, days: int, eval_days: int, **overrides: str) -> Path:
    """small_spec over only the first ``days`` days of the sample history (fast training runs).

    Recall at 80 % precision is not required: a few days of data are too few to promise it. Nor is
    a latency budget: these runs share the machine with the rest of the suite (the rule has unit tests).
    """
    import polars as pl

    path = small_spec(
        tmp,
        **{
            "eval_days = 10": f"eval_days = {eval_days}",
            "min_recall = 0.30": "min_recall = 0.0",
            "max_p99_ms = 10.0": "max_p99_ms = 1000.0",
            **overrides,
        },
    )
    source = path.parent / "transactions.parquet"
    frame = pl.read_parquet(source.resolve())
    start = frame["event_time"].min()
    source.unlink()
    frame.filter(pl.col("event_time") < start + pl.duration(days=days)).write_parquet(source)
    return path


MLP_TRAINING = """[training]
trainer = "mlp"
eval_days = 3
seed = 7
checkpoint_every = 1

[training.params]
epochs = 4
batch_size = 1024
hidden = 32
"""


def mlp_spec(tmp: Path, **overrides: str) -> Path:
    """The sample spec with the MLP trainer over 12 days of history (3 evaluated)."""
    path = sliced_spec(tmp, days=12, eval_days=3, **overrides)
    text = path.read_text()
    start, end = text.index("[training]"), text.index("[training.search]")
    text = text[:start] + MLP_TRAINING + "\n" + text[end:]
    path.write_text(text)
    return path


class HookReceiver(BaseHTTPRequestHandler):
    """The far end of an alert's webhook: keeps each delivery's JSON in its class's ``bodies`` and answers with
    ``status()``. Each subclass declares its own ``bodies``, so one test's deliveries are not another's."""

    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(self.status())
        self.end_headers()

    def status(self) -> int:
        return 200

    def log_message(self, *args) -> None:
        pass  # no line per delivery in the test's output


@contextlib.contextmanager
def webhook_alert(spec: Path, receiver: type[HookReceiver], name: str, method: str, threshold: float) -> Iterator[None]:
    """The spec with one alert rule in place of the defaults, the serving check's ``method`` above ``threshold``,
    whose webhook posts to ``receiver`` on a loopback port until the block ends."""
    server = HTTPServer(("127.0.0.1", 0), receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec.write_text(
        spec.read_text()
        + f"""
[[alerts]]
name = "{name}"
check = "serving"
method = "{method}"
op = ">"
threshold = {threshold}
action = "webhook"
url = "http://127.0.0.1:{server.server_port}/hook"
"""
    )
    try:
        yield
    finally:
        server.shutdown()


def interrupted_and_resumed(fit: Callable[..., Any], crash_in_epoch: int, checkpoint: Path) -> tuple[Any, list[int]]:
    """``fit(log_metric=…, checkpoint=…)`` stopped by an error in epoch ``crash_in_epoch`` (counted from 0), then
    run again from the checkpoint it left: the resumed model, and the epochs the resumed fit logged."""

    class Crash(Exception):
        pass

    def crash(name: str, value: float, epoch: int) -> None:
        if epoch == crash_in_epoch:
            raise Crash

    with pytest.raises(Crash):
        fit(log_metric=crash, checkpoint=checkpoint)
    epochs: list[int] = []
    resumed = fit(checkpoint=checkpoint, log_metric=lambda name, value, epoch: epochs.append(epoch))
    return resumed, epochs


def command_paths(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """(the words that reach it, its parser) for the top level and every subcommand under it, read from the
    parser itself: not through the CLI reference's generator, which the tests check."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*words, name))


def log_extent(db: Path) -> tuple[int, int, int, int]:
    """A prediction log's predictions, its first and last request ids (as numbers) and its shadow scores. A copy of
    a log whose writer commits each prediction with its shadow score, ids counting up, is of one instant when it
    holds as many of each, without a gap."""
    conn = sqlite3.connect(db)
    try:
        predictions, first, last = conn.execute(
            "SELECT COUNT(*), MIN(request_id), MAX(request_id) FROM predictions"
        ).fetchone()
        shadow = conn.execute("SELECT COUNT(*) FROM shadow_scores").fetchone()[0]
    finally:
        conn.close()
    return predictions, int(first), int(last), shadow


def in_production(home: Path, spec: Path, history: str | None = None) -> str:
    """``spec``'s model brought up by hand, as a user does: init, ingest ``history`` (a file beside the spec; without
    it training reads the spec's own source), train (in the worker process), promote v1, materialize its features.
    The model's name."""
    model = load_spec(spec).name
    ok(home, "init", "--spec", str(spec))
    if history is not None:
        ok(home, "ingest", model, str(spec.parent / history))
    ok(home, "train", model)
    ok(home, "promote", model, "1")
    ok(home, "features", "materialize", model)
    return model


def register_metrics(
    home: Home,
    model: str,
    run_id: str,
    metrics: dict,
    artifact_sha256: str = "0" * 64,
    feature_schema: dict | None = None,
) -> int:
    """A registered version whose evaluation metrics are all that is real (no parameters, gates or lineage), for
    tests of what reads only a version's metrics; the run ``run_id`` must exist. Its version number."""
    return home.registry.register_version(
        model,
        status="registered",
        artifact_sha256=artifact_sha256,
        feature_schema=feature_schema or {},
        metrics=metrics,
        params={},
        gate_report={},
        data_version="d",
        code_version="c",
        run_id=run_id,
    ).version


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    """``appliance --home HOME ARGS`` in process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--home", str(home), *args])
    return code, out.getvalue(), err.getvalue()


def ok(home: Path, *args: str) -> str:
    """``cli`` that must succeed: its stdout."""
    code, out, err = cli(home, *args)
    assert code == 0, err + out
    return out

"""Small things a strict client or an unlucky operator runs into, each through the real server or the CLI:
the metrics' Content-Type, an extreme `?since=`, 405 without `Allow`, statuses the OpenAPI schema leaves
out, and a `train` whose worker outlives the command. The data set is not the sample's (integer keys)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from appliance.gateway.keys import create_key
from appliance.home import Home
from appliance.layout import Layout
from tests.conftest import ok, running_server
from tests.own_data import write_subscriptions

ROOT = Path(__file__).resolve().parent.parent
PROBLEM_STATUSES = {401, 403, 404, 409, 413, 422, 429}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory serving ``subs`` v1."""
    tmp = tmp_path_factory.mktemp("small-fixes")
    spec = write_subscriptions(tmp / "data", days=10, live_days=2, per_day=200)
    home = tmp / "home"
    ok(home, "init", "--spec", str(spec))
    ok(home, "train", "subs")
    ok(home, "promote", "subs", "1")
    ok(home, "features", "materialize", "subs")
    return home


def _record() -> dict:
    return {
        "subscriber": 1007,
        "logged_at": datetime.now(UTC).isoformat(),
        "minutes": 30.0,
        "channel": 4,
        "on_mobile": 0,
    }


def test_metrics_say_their_charset_once(served):
    with running_server(served) as server:
        server.client.post("/v1/models/subs/predict", json=_record())
        metrics = server.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers.get_list("content-type") == ["text/plain; version=0.0.4; charset=utf-8"]


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+23:59"]
)
def test_an_extreme_since_is_a_422_not_a_500(served, since):
    with running_server(served) as server:
        answer = server.client.get("/v1/models/subs/monitoring", params={"since": since})
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "since" in answer.json()["detail"]
        assert (
            server.client.get("/v1/models/subs/monitoring", params={"since": "2026-03-01T00:00:00+05:00"}).status_code
            == 200
        )


def test_a_405_says_which_methods_are_allowed(served):
    with running_server(served) as server:
        c = server.client
        for method, path in (
            ("DELETE", "/v1/models"),
            ("GET", "/v1/models/subs/promote"),
            ("PUT", "/metrics"),
            ("GET", "/v1/models/subs/predict"),
            ("PATCH", "/v1/alerts/1/ack"),
        ):
            answer = c.request(method, path)
            assert answer.status_code == 405, (method, path, answer.text)
            allowed = {m.strip() for m in answer.headers.get("allow", "").split(",") if m.strip()}
            assert allowed and method not in allowed, (method, path, answer.headers)
            for other in allowed - {"OPTIONS", "HEAD"}:
                assert c.request(other, path).status_code != 405, (other, path)


def test_every_status_a_route_answers_is_in_its_documented_responses(served):
    # Each route is attacked as a caller would: no key, a key without the scope, a key over its rate, an
    # unknown name, a body that is not JSON, one too large, and actions that conflict with the state.
    with running_server(served) as server:
        with Home(server.home) as home:
            _, admin = create_key(home.conn, ["admin"])
            _, predict_only = create_key(home.conn, ["predict"])
            _, slow = create_key(home.conn, ["admin"], rate_per_second=0.2)
        c = server.client
        deadline = time.monotonic() + 10
        while c.get("/v1/models").status_code != 401:
            assert time.monotonic() < deadline, "the server did not pick up the keys"
            time.sleep(0.05)
        schema = c.get("/schema/openapi.json", headers=_bearer(admin)).json()
        operations = [
            (method.upper(), path, op)
            for path, item in schema["paths"].items()
            for method, op in item.items()
            if "{name}" in path or "/subs/" not in path
        ]
        answered: dict[tuple[str, str], set[int]] = {}

        def attack(method: str, path: str, key: str | None, filled: dict[str, str], **kwargs) -> None:
            url = path.format(**{k: v for k, v in filled.items() if "{" + k + "}" in path})
            headers = {"content-type": "application/json", **(_bearer(key) if key else {})}
            status = c.request(method, url, headers=headers, **kwargs).status_code
            answered.setdefault((method, path), set()).add(status)

        known = {"name": "subs", "run_id": "nope", "alert_id": "1"}
        unknown = {"name": "nope", "run_id": "nope", "alert_id": "999999"}
        for method, path, op in operations:
            body = {"json": {}} if "requestBody" in op else {}
            attack(method, path, None, known, **body)
            attack(method, path, predict_only, known, **body)
            attack(method, path, admin, unknown, **body)
            if "requestBody" in op:
                attack(method, path, admin, known, content=b"{not json")
                attack(method, path, admin, known, content=b"[" + b"1," * (3 * 1024 * 1024) + b"1]")
            for _ in range(3):
                attack(method, path, slow, known, **body)
        attack("POST", "/v1/models/{name}/promote", admin, known, json={"version": 1})  # already in production
        attack("POST", "/v1/models/{name}/rollback", admin, known)  # nothing to roll back to
        attack("POST", "/v1/models/{name}/deployments", admin, known, json={"strategy": "canary", "version": 1})

    seen = set().union(*answered.values())
    assert PROBLEM_STATUSES <= seen, f"the attack did not provoke {PROBLEM_STATUSES - seen}"
    undocumented = {
        f"{method} {path}": sorted(
            str(s) for s in statuses - {405} if str(s) not in _operation(schema, method, path)["responses"]
        )
        for (method, path), statuses in answered.items()
    }
    assert not {k: v for k, v in undocumented.items() if v}, undocumented
    for method, path, op in operations:  # and nothing documented that the API never answers (Litestar's 400)
        for status in op["responses"]:
            assert int(status) < 400 or int(status) in PROBLEM_STATUSES | {503}, (method, path, status)
            if int(status) in PROBLEM_STATUSES:  # (readyz's 503 is its readiness, in JSON)
                assert "application/problem+json" in op["responses"][status].get("content", {}), (method, path)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _operation(schema: dict, method: str, path: str) -> dict:
    return schema["paths"][path][method.lower()]


MLP_TRAINING = """
[training]
trainer = "mlp"
eval_days = 3
seed = 5
checkpoint_every = 1

[training.params]
epochs = 5000
batch_size = 256
hidden = 16
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_train_command_stops_its_worker(tmp_path, how):
    spec = write_subscriptions(tmp_path / "data", days=8, live_days=1, per_day=150)
    text = spec.read_text()
    start, end = text.index("[training]"), text.index("[validation]")
    spec.write_text(text[:start] + MLP_TRAINING.lstrip() + "\n" + text[end:])
    home = tmp_path / "home"
    ok(home, "init", "--spec", str(spec))
    command = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--home", str(home), "train", "subs"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while True:  # until its worker trains (a checkpoint saved)
        assert command.poll() is None and time.monotonic() < deadline, "the run did not reach training"
        if any(Layout(home).checkpoints.glob("*/*.pt")):
            break
        time.sleep(0.05)
    with sqlite3.connect(Layout(home).metadata_db) as db:
        run_id, worker_pid = db.execute("SELECT id, worker_pid FROM runs WHERE status = 'running'").fetchone()
    worker = psutil.Process(worker_pid)
    os.kill(command.pid, how)  # the command is gone, as a terminal or a service manager ends it
    command.wait(timeout=30)
    try:
        worker.wait(timeout=60)  # its worker stops too, at its next safe point, instead of training on unattended
    finally:
        if worker.is_running():
            worker.kill()
    with Home(home) as h:
        assert h.registry.versions("subs") == []
        status, error = h.conn.execute("SELECT status, error FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert status == "failed" and "--resume" in error, (status, error)

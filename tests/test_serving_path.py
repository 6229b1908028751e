"""The serving path around the model: the prediction log, feedback, micro-batching, /metrics, offline docs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import msgspec
import numpy as np
import pytest

from appliance.errors import InvalidInput
from appliance.features.online_updates import OnlineUpdater
from appliance.layout import Layout
from appliance.serving import predict
from appliance.serving.batching import Arrivals, MicroBatcher, NotEncoded
from appliance.serving.log_writer import Batch, LogWriter
from appliance.serving.predict import PredictEndpoint
from appliance.serving.prediction_log import PredictionLog
from appliance.serving.state import ServingState
from storage.errors import StorageError
from storage.online_store import OnlineStore
from storage.prediction_log import PredictionStore
from tests.conftest import SAMPLE_RECORD
from tests.test_cli import ROOT, _free_port, wait_ready


def _row(i: int) -> tuple:
    return (
        f"r{i}",
        0,
        "fraud",
        1,
        "production",
        None,
        time.time(),
        None,
        None,
        {"amount": i},
        0.5,
        1,
        1.0,
        200,
        None,
        None,
    )


def test_a_full_log_queue_counts_its_overflow_and_loses_nothing_it_accepted(tmp_path):
    path = tmp_path / "predictions.db"
    log = PredictionLog(path, capacity=5, batch_rows=100)
    blocker = sqlite3.connect(path, timeout=30, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer now waits on the lock with its batch in hand
    log.record(_row(0))
    time.sleep(0.3)
    for i in range(1, 20):
        log.record(_row(i))
    assert log.overflow == 20 - 1 - 5 and log.depth == 5
    blocker.execute("ROLLBACK")
    assert log.flush(timeout=20)
    log.close()
    store = PredictionStore(path)
    assert store.count() == 6 and log.written == 6
    assert store.has_request("r0") and not store.has_request("r19")
    # the refused rows are recorded per model, for a monitor job in any process to see
    assert store.overflow_between("fraud", 0, time.time()) == 14
    assert store.overflow_between("other", 0, time.time()) == 0


def test_a_killed_log_writer_is_started_again_and_a_terminated_one_keeps_writing(tmp_path):
    log = PredictionLog(tmp_path / "predictions.db", batch_rows=50)
    for i in range(100):
        log.record(_row(i))
    assert log.flush(timeout=30)
    first = log.writer_pid
    os.kill(first, signal.SIGTERM)  # systemd and a terminal signal the whole group: the server decides
    os.kill(first, signal.SIGINT)
    for i in range(100, 200):
        log.record(_row(i))
    assert log.flush(timeout=30) and log.writer_pid == first and log.writer_restarts == 0
    os.kill(first, signal.SIGKILL)
    for i in range(200, 300):
        log.record(_row(i))
    assert log.flush(timeout=60)
    assert log.writer_pid != first and log.writer_restarts == 1
    log.close()
    assert PredictionStore(tmp_path / "predictions.db").count() == 300
    assert log.written == 300 and log.write_errors == 0


def test_a_batch_the_writer_cannot_handle_is_counted_lost_and_the_writer_lives_on(tmp_path):
    # A lone surrogate has no UTF-8 spelling, so the row cannot be stored (the server's decoder refuses
    # one in a request): a batch like it must not kill every writer process it is resent to.
    log = PredictionLog(tmp_path / "predictions.db")
    pid = log.writer_pid
    log.record((*_row(1)[:9], {"merchant_category": "\ud800"}, *_row(1)[10:]))
    assert log.flush(timeout=30)
    assert log.write_errors == 1 and log.written == 0 and log.writer_restarts == 0 and log.writer_pid == pid
    log.record(_row(2))
    assert log.flush(timeout=30)
    log.close()
    assert log.written == 1 and log.writer_restarts == 0
    assert PredictionStore(tmp_path / "predictions.db").count() == 1


def test_a_resent_batch_is_not_written_or_applied_twice(tmp_path):
    writer = LogWriter(PredictionStore(tmp_path / "predictions.db"), OnlineUpdater(OnlineStore(tmp_path / "online.db")))
    rows = [_row(i) for i in range(5)]
    assert writer.handle(Batch(rows, [])).written == 5
    again = writer.handle(Batch(rows, [], resent=True))  # the writer that had it died after its commit
    assert again.written == 5 and again.write_errors == 0
    assert again.online_errors == 5  # maybe applied, maybe not: counted as lost to the online store
    fresh = writer.handle(Batch([_row(9)], [], resent=True))  # died before its commit: written now
    assert fresh.written == 1 and fresh.online_errors == 0
    assert writer.store.count() == 6


def test_requests_wait_for_a_log_writer_that_is_behind_but_not_for_a_stuck_one(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "LOG_STALL_S", 0.5)  # longer than SQLite's busy handler sleeps at a time
    state = ServingState(tmp_path, exposed=False)
    state.log = PredictionLog(tmp_path / "predictions.db", batch_rows=4, high_water=8, linger_s=0.01)
    state.log.record(_row(-1))
    assert state.log.flush(timeout=30)  # the writer process is up
    blocker = sqlite3.connect(tmp_path / "predictions.db", timeout=30, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer is as slow as the test lets it be: it waits on the lock
    endpoint = PredictEndpoint(state)

    async def main() -> None:
        for i in range(20):
            state.log.record(_row(i))
        waiting = asyncio.ensure_future(endpoint._wait_for_log())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # behind, and waiting while the writer works
        blocker.execute("ROLLBACK")  # the writer moves: the wait ends once half the high-water mark is left
        await asyncio.wait_for(waiting, 5)
        assert state.log.depth <= 4
        await asyncio.to_thread(state.log.flush)
        blocker.execute("BEGIN IMMEDIATE")
        for i in range(20, 40):
            state.log.record(_row(i))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await asyncio.wait_for(endpoint._wait_for_log(), 5)  # no progress for LOG_STALL_S: stuck
        assert 0.5 <= time.monotonic() - started < 3 and state.log.depth > 8
        assert endpoint._stalled_at == state.log.processed  # so nothing waits for it until it moves again

    asyncio.run(main())
    assert state.metrics.log_waits == 2
    blocker.execute("ROLLBACK")
    state.log.close()
    assert PredictionStore(tmp_path / "predictions.db").count() == 41 and state.log.write_errors == 0


def test_single_rows_arriving_together_share_one_call():
    calls = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x[:, 0] * 2

    async def main() -> list[float]:
        arrivals = Arrivals()
        batcher = MicroBatcher(_encode, run, max_batch=8, max_wait_s=0.05, arrivals=arrivals)
        arrivals.count = 20  # twenty requests on their way: rows wait for company
        futures = []
        for i in range(20):
            arrivals.count -= 1
            futures.append(batcher.score({"x": float(i)}))
        return await asyncio.gather(*futures)

    assert asyncio.run(main()) == [2.0 * i for i in range(20)]
    assert calls == [8, 8, 4]


def _encode(records: list) -> np.ndarray:
    # the rows of records {"x": number}; anything else is the caller's error, as a model's encoder says
    for i, record in enumerate(records):
        if type(record.get("x")) is not float:
            raise InvalidInput(f"record {i}: 'x' must be a number")
    return np.array([[r["x"]] for r in records], dtype=np.float32)


def test_a_record_that_cannot_be_encoded_fails_alone_and_with_its_own_error():
    encoded, scored = [], []

    def encode(records: list) -> np.ndarray:
        encoded.append(len(records))
        return _encode(records)

    def run(x: np.ndarray) -> np.ndarray:
        scored.append(len(x))
        return x[:, 0] * 2

    async def main() -> list:
        arrivals = Arrivals()
        batcher = MicroBatcher(encode, run, max_batch=8, max_wait_s=0.05, arrivals=arrivals)
        arrivals.count = 4
        futures = []
        for record in ({"x": 1.0}, {"x": "one"}, {"x": 3.0}, {}):
            arrivals.count -= 1
            futures.append(batcher.score(record))
        return await asyncio.gather(*futures, return_exceptions=True)

    one, bad, three, empty = asyncio.run(main())
    assert (one, three) == (2.0, 6.0)
    for failed in (bad, empty):  # each with the message it would have alone, not its place in the batch
        assert isinstance(failed, NotEncoded) and isinstance(failed.cause, InvalidInput)
        assert str(failed.cause) == "record 0: 'x' must be a number"
    assert encoded == [4, 1, 1, 1, 1] and scored == [2]  # together first; then one by one, to find which


def test_a_lone_row_is_scored_at_once_and_a_busy_turn_turns_batching_on():
    calls = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x[:, 0] * 2

    async def main() -> None:
        batcher = MicroBatcher(_encode, run, max_batch=8, max_wait_s=0.05, arrivals=Arrivals())
        row = {"x": 1.0}
        alone = batcher.score(row)
        assert alone.done() and alone.result() == 2.0  # nothing in sight: no turn of the loop to wait for
        await asyncio.sleep(0)
        first, second, third = (batcher.score(row) for _ in range(3))  # one turn brings three rows
        assert first.done() and not second.done()  # the first cannot know; the others wait for the turn's end
        assert await asyncio.gather(second, third) == [2.0, 2.0]
        await asyncio.sleep(0)
        busy = batcher.score(row)  # after a busy turn, even the first row of a turn waits for company
        assert not busy.done() and await busy == 2.0

    asyncio.run(main())
    assert calls == [1, 1, 2, 1]


def test_every_answer_has_a_request_id_and_a_log_row_and_feedback_finds_it(server):
    c = server.client
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda i: c.post("/v1/models/fraud/predict", json={**SAMPLE_RECORD, "amount": i}), range(40))
        )
    many = c.post("/v1/models/fraud/predict", json=[SAMPLE_RECORD, SAMPLE_RECORD])
    assert all(a.status_code == 200 for a in answers) and many.status_code == 200
    ids = [a.json()["request_id"] for a in answers]
    assert len(set(ids)) == 40 and answers[0].headers["x-request-id"] == ids[0]
    fed = c.post(
        "/v1/models/fraud/feedback",
        json={
            "outcomes": [
                {"request_id": ids[0], "outcome": 1},
                {"request_id": many.json()["request_id"], "position": 1, "outcome": 0},
                {"request_id": "never-seen", "outcome": 1},
                {"request_id": ids[1], "position": 5, "outcome": 1},
            ]
        },
    )
    assert fed.status_code == 200
    assert fed.json() == {
        "accepted": 2,
        "unknown": [{"request_id": "never-seen", "position": 0}, {"request_id": ids[1], "position": 5}],
    }
    assert c.post("/v1/models/fraud/feedback", json={"outcome": 1}).status_code == 422
    assert c.post("/v1/models/nope/feedback", json={"outcomes": []}).status_code == 404
    store = PredictionStore(Layout(server.home).predictions_db)
    assert store.count("fraud") == 42
    row = store.conn.execute("SELECT * FROM predictions WHERE request_id = ?", (ids[3],)).fetchone()
    assert row["version"] == 1 and row["arm"] == "production" and row["status"] == 200
    assert '"amount":3' in row["features_json"] and row["latency_ms"] > 0
    assert row["probability"] == answers[3].json()["probability"]


def test_metrics_are_prometheus_text(server):
    for _ in range(3):
        server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD)
    server.client.post("/v1/models/fraud/predict", json={"amount": 1})
    for i in range(3):  # names a client makes up are not labels: they would grow the metrics without bound
        assert server.client.post(f"/v1/models/made-up-{i}/predict", json=SAMPLE_RECORD).status_code == 404
    too_large = server.client.post("/v1/models/fraud/predict", content=b"[" + b"1," * 3_000_000 + b"1]")
    assert too_large.status_code == 413
    text = server.client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = text.text
    assert 'appliance_requests_total{model="fraud",version="1",arm="production",status="200"} 3' in body
    assert 'appliance_requests_total{model="fraud",version="",arm="",status="422"} 1' in body
    assert 'appliance_requests_total{model="",version="",arm="",status="404"} 3' in body and "made-up" not in body
    assert 'appliance_requests_total{model="fraud",version="",arm="",status="413"} 1' in body
    assert 'appliance_request_latency_seconds_bucket{model="fraud",le="+Inf"} 5' in body
    assert "appliance_batch_rows_count 3" in body
    assert "appliance_prediction_log_overflow_total 0" in body and "appliance_prediction_log_queue_depth" in body
    for line in body.splitlines():  # every sample line is NAME{labels} VALUE
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? -?[0-9.e+]+", line), line


def test_the_openapi_schema_and_docs_page_need_no_internet(server):
    schema = server.client.get("/schema/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/v1/models/{name}/predict" in paths and "/v1/models/{name}/deployments" in paths
    assert "requestBody" in paths["/v1/models/{name}/feedback"]["post"]
    predict = paths["/v1/models/{name}/predict"]["post"]  # not a Litestar handler: described by hand
    assert "requestBody" in predict and "request_id" in str(predict["responses"]["200"])
    docs = server.client.get("/schema")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/v1/models/{name}/promote" in docs.text
    for text in (schema.text, docs.text):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), "an external URL"
        assert "<script" not in text


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c twice"])
def test_a_stop_writes_every_queued_prediction_before_exit(home_dir, stop):
    """SIGTERM, or Ctrl-C twice from a terminal (to the whole process group: the log's writer process too),
    the second one while the first waits on the log: the queue is still written, and the server exits."""
    port = _free_port()
    before = PredictionStore(Layout(home_dir).predictions_db).count()
    code = f"from appliance.serving.server import serve; serve({str(home_dir)!r}, port={port})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job has
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_ready(client, proc)
            blocker = sqlite3.connect(Layout(home_dir).predictions_db, timeout=30, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # the writer falls behind: every row stays queued
            ok = sum(client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 200 for _ in range(100))
        if stop == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:  # the first waits for a request still in flight (half its body sent); the second cuts that wait
            in_flight = socket.create_connection(("127.0.0.1", port))
            in_flight.sendall(b"POST /v1/models/fraud/predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
            time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGINT)
        time.sleep(1)
        assert proc.poll() is None, "the server exited with its log queue unwritten"
        blocker.execute("ROLLBACK")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = proc.stdout.read() if proc.stdout else ""
    assert ok == 100 and PredictionStore(Layout(home_dir).predictions_db).count() == before + 100
    assert "Traceback" not in output, output


def test_a_client_gone_before_its_body_arrives_gets_no_answer(tmp_path):
    endpoint = PredictEndpoint(ServingState(tmp_path, exposed=False))
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [], "client": ("127.0.0.1", 50000)}
    asyncio.run(endpoint(scope, receive, send, "fraud"))
    assert sent == [] and endpoint.state.metrics.requests == {}


def test_a_failure_not_the_callers_is_a_500_problem_document(tmp_path, monkeypatch):
    endpoint = PredictEndpoint(ServingState(tmp_path, exposed=False))

    async def ask() -> tuple[int, dict]:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "headers": [], "client": ("127.0.0.1", 5)}
        await endpoint(scope, receive, send, "fraud")
        return sent[0]["status"], msgspec.json.decode(sent[1]["body"])

    def storage_fails(name):
        raise StorageError("predictions.db is locked")

    monkeypatch.setattr(endpoint.state, "route", storage_fails)
    status, body = asyncio.run(ask())
    assert status == 500 and body["title"] == "Storage error" and "locked" in body["detail"]

    def bug(name):
        raise RuntimeError("a bug")

    monkeypatch.setattr(endpoint.state, "route", bug)
    status, body = asyncio.run(ask())
    assert status == 500 and body["title"] == "Internal error" and "a bug" not in body["detail"]


def test_a_server_starts_without_the_training_libraries():
    # A server only scores ONNX: LightGBM (with scikit-learn and SciPy) and torch would add seconds to
    # its start and over 150 MiB to its memory on an edge box.
    code = (
        "import sys, appliance.serving.app; "
        "print(sorted(m for m in ('lightgbm', 'sklearn', 'scipy', 'torch', 'nannyml') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_the_log_writer_process_imports_no_data_libraries():
    # It writes SQLite rows and runs the online update's SQL: polars, NumPy and DuckDB would add about
    # 65 MiB to its memory and half a second to each (re)start. The server hands it plain data instead.
    code = (
        "import sys, appliance.serving.log_writer; "
        "print(sorted(m for m in ('polars', 'numpy', 'duckdb', 'apscheduler', 'appliance.spec') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr

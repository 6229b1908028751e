"""The prediction API through a real uvicorn server on a loopback port."""

from __future__ import annotations

import socket
import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from appliance.config import bundled_spec_path
from appliance.features.online import namespace
from appliance.gateway.keys import create_key
from appliance.home import Home
from appliance.layout import Layout
from appliance.serving import http_protocol
from tests.conftest import SAMPLE_RECORD, predict_request


def test_one_record_and_a_list_of_records(server):
    one = server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD)
    assert one.status_code == 200
    body = one.json()
    assert body["model"] == "fraud" and body["version"] == 1
    assert 0 <= body["probability"] <= 1 and body["label"] == int(body["probability"] >= 0.5)
    many = server.client.post("/v1/models/fraud/predict", json=[SAMPLE_RECORD, {**SAMPLE_RECORD, "amount": 3.0}])
    assert many.status_code == 200
    predictions = many.json()["predictions"]
    assert len(predictions) == 2 and predictions[0]["probability"] == body["probability"]


def test_health_readiness_and_model_list(server):
    assert server.client.get("/healthz").json() == {"status": "ok"}
    ready = server.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["serving"] == {"fraud": 1}
    assert server.client.get("/v1/models").json() == [
        {"name": "fraud", "serving_version": 1, "deployment": None, "provider": "CPUExecutionProvider"}
    ]


def _problem(response: httpx.Response, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    for phrase in phrases:
        assert phrase in body["detail"]


def test_bad_input_is_a_problem_document(server):
    c = server.client
    _problem(c.post("/v1/models/nope/predict", json=SAMPLE_RECORD), 404, "unknown model 'nope'", "fraud")
    missing = {k: v for k, v in SAMPLE_RECORD.items() if k != "amount"}
    _problem(c.post("/v1/models/fraud/predict", json=missing), 422, "missing feature 'amount'")
    no_entity = {k: v for k, v in SAMPLE_RECORD.items() if k != "user_id"}
    _problem(c.post("/v1/models/fraud/predict", json=no_entity), 422, "missing entity key 'user_id'")
    _problem(
        c.post("/v1/models/fraud/predict", json={**SAMPLE_RECORD, "event_time": "soon"}),
        422,
        "'event_time' must be an ISO 8601 time",
    )
    _problem(
        c.post("/v1/models/fraud/predict", json={**SAMPLE_RECORD, "amount": "lots"}), 422, "'amount' must be a number"
    )
    _problem(c.post("/v1/models/fraud/predict", json=[]), 422, "empty")
    _problem(c.post("/v1/models/fraud/predict", json=[SAMPLE_RECORD] * 1001), 413, "limit", "1000")
    _problem(c.post("/v1/models/fraud/predict", content=b"{not json"), 422, "not valid JSON")
    _problem(c.post("/v1/models/fraud/predict", json="a string"), 422, "JSON object")
    _problem(c.post("/v1/models/fraud/predict", content=b"[" + b"1," * 3_000_000 + b"1]"), 413, "MiB")


def test_hostile_input_is_a_4xx_problem_and_the_server_goes_on(server):
    c = server.client
    admin = server.admin_headers()
    deep = b'{"x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    record = httpx.Request("POST", "/", json=SAMPLE_RECORD).content
    not_utf8 = b'"\xff\xfe"'  # where each route reads a string
    for path, body in (
        ("/v1/models/fraud/predict", b'{"a": %s}'),
        ("/v1/models/fraud/feedback", b'{"outcomes": [{"request_id": %s, "outcome": 1}]}'),
        ("/v1/models/fraud/promote", b'{"version": 1, "reason": %s}'),
    ):
        _problem(c.post(path, content=deep, headers=admin), 422, "nested")
        _problem(c.post(path, content=body % not_utf8, headers=admin), 422, "UTF-8")
    lone = record.replace(b'"u00042"', b'"u\\ud800"')  # a lone surrogate: no UTF-8 spelling, no SQLite text
    _problem(c.post("/v1/models/fraud/predict", content=lone, headers=admin), 422, "surrogate")
    _problem(
        c.post("/v1/models/fraud/predict", json={**SAMPLE_RECORD, "user_id": "u" * 300}, headers=admin),
        422,
        "user_id",
        "256",
    )
    huge = 2**64
    for outcome in (
        {"request_id": "r", "outcome": 1, "position": huge},
        {"request_id": "r", "outcome": 1e300},
        {"request_id": "r", "outcome": 1, "position": -1},
    ):
        _problem(c.post("/v1/models/fraud/feedback", json={"outcomes": [outcome]}, headers=admin), 422, "outcomes")
    _problem(c.post("/v1/models/fraud/promote", json={"version": huge}, headers=admin), 422, "version")
    _problem(
        c.post("/v1/models/fraud/deployments", json={"strategy": "canary", "version": huge}, headers=admin),
        422,
        "version",
    )
    _problem(c.post(f"/v1/alerts/{huge}/ack", json={}, headers=admin), 404, str(huge))
    too_large = b"[" + b"1," * 3_000_000 + b"1]"
    for path in ("/v1/models/fraud/predict", "/v1/models/fraud/feedback"):  # the endpoint's limit, Litestar's
        big = c.post(path, content=too_large, headers=admin)
        _problem(big, 413, "MiB")
        assert big.json()["title"] == "Payload too large"
    assert c.get("/v1/nothing-here", headers=admin).json()["title"] == "Not found"
    assert c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers=admin).status_code == 200


def _connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _send_endless(conn: socket.socket, start: bytes) -> bytes:
    # ``start``, then 4 MiB that never end a line; what the server answered (it closes while they are on their way)
    conn.sendall(start)
    try:
        for _ in range(64):
            conn.sendall(b"a" * 65_536)
    except OSError:
        pass
    return conn.recv(65_536)


def _read_to_close(conn: socket.socket) -> bytes:
    answer = b""
    while chunk := conn.recv(65_536):
        answer += chunk
    return answer


def test_a_request_head_past_the_bound_is_refused_before_it_is_buffered(server):
    record = httpx.Request("POST", "/", json=SAMPLE_RECORD).content
    with _connect(server) as conn:
        answer = _send_endless(conn, b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\nX-Padding: ")
    assert answer.startswith(b"HTTP/1.1 431 ") and b"KiB" in answer, answer[:200]
    with _connect(server) as conn:  # whole, in one write
        conn.sendall(
            b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\nX-Padding: "
            + b"a" * 70_000
            + b"\r\ncontent-length: 2\r\n\r\n{}"
        )
        assert conn.recv(65_536).startswith(b"HTTP/1.1 431 ")
    with _connect(server) as conn:  # trailers after a chunked body are a head too
        answer = _send_endless(
            conn,
            b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + f"{len(record):x}\r\n".encode() + record + b"\r\n0\r\nx-trailer: ",
        )
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    with _connect(server) as conn:  # pipelined after a good request: that one's answer comes first
        good = (
            b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(record)}\r\n\r\n".encode()
            + record
        )
        conn.sendall(good + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 70_000 + b"\r\n\r\n")
        answers = _read_to_close(conn)
    assert answers.startswith(b"HTTP/1.1 200 ") and answers.count(b"HTTP/1.1 431 ") == 1, answers[:300]
    assert 'appliance_http_refused_total{status="431"} 4' in server.client.get("/metrics").text
    padded = server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers={"x-padding": "a" * 16_000})
    assert padded.status_code == 200  # a large but bounded head is fine


def _data_segments_in(conn: socket.socket) -> int:
    # Linux's struct tcp_info: tcpi_data_segs_in, the TCP segments with data this socket received, at byte 152.
    return int.from_bytes(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)[152:156], sys.byteorder)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's TCP_INFO")
def test_each_answer_is_one_write(server):
    # A response's head and body leave in one send: one segment (and one wake-up of the client) each.
    record = httpx.Request("POST", "/", json=SAMPLE_RECORD).content
    request = (
        b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(record)}\r\n\r\n".encode()
        + record
    )
    with _connect(server) as conn:
        for expected in range(1, 6):
            conn.sendall(request if expected % 2 else b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # ours, Litestar's
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer) < _answer_length(answer):
                answer += conn.recv(65_536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert _data_segments_in(conn) == expected


def test_a_client_awaiting_100_continue_gets_it_then_its_answer(server):
    # "100 Continue" is a head no body follows: held for the body, it must still go out at the next turn
    record = httpx.Request("POST", "/", json=SAMPLE_RECORD).content
    with _connect(server) as conn:
        conn.sendall(
            b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"expect: 100-continue\r\n" + f"content-length: {len(record)}\r\n\r\n".encode()
        )
        assert conn.recv(65_536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(record)
        assert conn.recv(65_536).startswith(b"HTTP/1.1 200 ")


def _answers(conn: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    # ``count`` whole answers, as (head, body)
    data, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in data or len(data) < _answer_length(data):
            chunk = conn.recv(65_536)
            assert chunk, f"closed after {len(answers)} answers"
            data += chunk
        end = _answer_length(data)
        head, _, body = data[:end].partition(b"\r\n\r\n")
        answers.append((head, body))
        data = data[end:]
    return answers


def test_plain_predicts_are_answered_as_the_app_answers_them_and_in_order(server):
    # Plain predict requests are answered by the HTTP protocol itself; chunked ones by the ASGI route.
    # Both give the same answer, and answers to pipelined requests come in order, whichever way each went.
    record = httpx.Request("POST", "/", json=SAMPLE_RECORD).content
    pair = httpx.Request("POST", "/", json=[SAMPLE_RECORD, {**SAMPLE_RECORD, "amount": 3.0}]).content
    chunked = (
        b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        + f"{len(record):x}\r\n".encode()
        + record
        + b"\r\n0\r\n\r\n"
    )
    with _connect(server) as conn:
        conn.sendall(
            predict_request("fraud", record)
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            + chunked
            + predict_request("fraud", pair)
            + predict_request("fraud", b'{"amount": 1}')
            + predict_request("fraud", record)
        )
        answers = _answers(conn, 6)
    direct, health, through_asgi, two, bad, again = answers
    assert [h.split(b"\r\n")[0] for h, _ in answers] == [b"HTTP/1.1 200 OK"] * 4 + [
        b"HTTP/1.1 422 Unprocessable Entity",
        b"HTTP/1.1 200 OK",
    ]
    assert msgspec.json.decode(health[1]) == {"status": "ok"}
    first, asgi = msgspec.json.decode(direct[1]), msgspec.json.decode(through_asgi[1])
    assert asgi["probability"] == first["probability"] and asgi["request_id"] != first["request_id"]
    names = [sorted(line.split(b":")[0] for line in h.split(b"\r\n")[1:]) for h, _ in (direct, through_asgi)]
    assert names[0] == names[1] == [b"content-length", b"content-type", b"date", b"server", b"x-request-id"]
    assert msgspec.json.decode(two[1])["predictions"][0]["probability"] == first["probability"]
    assert b"missing entity key" in bad[1]
    assert msgspec.json.decode(again[1])["probability"] == first["probability"]
    with _connect(server) as conn:  # the client says it is done: the answer says so, and the connection ends
        conn.sendall(predict_request("fraud", record, b"connection: close"))
        answer = _read_to_close(conn)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nconnection: close\r\n\r\n" in answer  # the last header, as uvicorn puts it


def test_a_predict_whose_body_never_comes_is_not_waited_for(server):
    # Announced bodies make rows already in a micro-batch wait for them (at most max_wait): a client gone
    # mid-body must not leave its announcement behind.
    record = httpx.Request("POST", "/", json=SAMPLE_RECORD).content
    with _connect(server) as conn:
        conn.sendall(predict_request("fraud", record)[:-10])
        deadline = time.monotonic() + 5
        while server.app.predict.state.arrivals.count != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    deadline = time.monotonic() + 5
    while server.app.predict.state.arrivals.count != 0:
        assert time.monotonic() < deadline, "the body the client took away is still awaited"
        time.sleep(0.01)
    assert server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 200


def test_a_scoring_failure_is_a_500_answered_and_logged(server, monkeypatch):
    from appliance.scoring import onnx_model

    def broken(session, x):
        raise RuntimeError("ONNX Runtime failed")

    monkeypatch.setattr(onnx_model, "predict_proba", broken)
    for records in (SAMPLE_RECORD, [SAMPLE_RECORD] * 2):  # micro-batched, and scored at once
        failed = server.client.post("/v1/models/fraud/predict", json=records)
        _problem(failed, 500, "see its log")
    monkeypatch.undo()
    assert server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 200
    server.app.predict.state.log.flush()
    with sqlite3.connect(Layout(server.home).predictions_db) as db:
        statuses = [s for (s,) in db.execute("SELECT status FROM predictions ORDER BY received_at, position")]
    assert statuses == [500, 500, 500, 200]
    assert (
        'appliance_requests_total{model="fraud",version="1",arm="production",status="500"} 2'
        in server.client.get("/metrics").text
    )


def _answer_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return len(head) + 4 + length


def test_a_connection_without_a_whole_head_in_time_is_closed(server, monkeypatch):
    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_S", 0.5)
    idle = [_connect(server) for _ in range(20)]  # sending nothing: they hold no one else up
    assert server.client.get("/healthz").status_code == 200
    with _connect(server) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        assert _read_to_close(slow).startswith(b"HTTP/1.1 408 ")
    # New connections from here: the client's pooled one has been idle past the shortened deadline too, and
    # reusing it just as the server closes it would be the usual keep-alive race, not what is tested.
    assert 'appliance_http_refused_total{status="408"} 1' in httpx.get(f"{server.url}/metrics").text
    for conn in idle:
        assert _read_to_close(conn) == b""  # closed by the server
        conn.close()
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_connection_answered_before_its_body_arrived_is_closed_when_idle(server, monkeypatch):
    # The body's arrival cancels uvicorn's keep-alive timer, armed with the early answer; the head
    # timer still ends the idle connection.
    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_S", 0.5)
    with Home(server.home) as home:
        create_key(home.conn, ["predict"])
    record = httpx.Request("POST", "/", json=SAMPLE_RECORD).content
    deadline = time.monotonic() + 10
    while server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code != 401:
        assert time.monotonic() < deadline, "the server did not pick up the new key"
        time.sleep(0.02)
    with _connect(server) as conn:
        request = predict_request("fraud", record)
        conn.sendall(request[: -len(record)])
        time.sleep(0.2)  # answered by now
        conn.sendall(record)
        ((refused, _),) = _answers(conn, 1)
        assert refused.startswith(b"HTTP/1.1 401 ")
        started = time.monotonic()
        assert conn.recv(65_536) == b""  # closed by the server
        assert time.monotonic() - started < 5


def test_a_refusal_before_the_body_is_read_closes_the_connection(server):
    with Home(server.home) as home:
        create_key(home.conn, ["predict"])  # now a key is needed
    deadline = time.monotonic() + 10
    while server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code != 401:
        assert time.monotonic() < deadline, "the server did not pick up the new key"
        time.sleep(0.02)
    with _connect(server) as conn:  # the client waits for 100 Continue before it sends the body
        conn.sendall(
            b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\nexpect: 100-continue\r\ncontent-length: 150\r\n\r\n"
        )
        answer = _read_to_close(conn)
    assert answer.startswith(b"HTTP/1.1 401 ") and b"connection: close" in answer.lower(), answer[:300]
    refused = server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD)  # its body sent: still the last
    assert refused.status_code == 401 and refused.headers["connection"] == "close"
    with _connect(server) as conn:  # refused before its body, which is dropped: nothing after it is answered
        conn.sendall(
            predict_request("fraud", httpx.Request("POST", "/", json=SAMPLE_RECORD).content)
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answer = _read_to_close(conn)
    assert answer.startswith(b"HTTP/1.1 401 ") and b"www-authenticate" in answer.lower(), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1  # the connection ended with the refusal


def _chunks(body: bytes, size: int):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_the_predict_route_reads_chunked_bodies_and_refuses_other_methods(server):
    # predict is a plain ASGI endpoint in front of Litestar: it reads the body and checks its size itself
    c = server.client
    whole = c.post("/v1/models/fraud/predict", json=[SAMPLE_RECORD] * 3).json()
    body = httpx.Request("POST", "/", json=[SAMPLE_RECORD] * 3).content
    chunked = c.post("/v1/models/fraud/predict", content=_chunks(body, 7))  # no Content-Length: chunked
    assert chunked.status_code == 200, chunked.text
    assert [p["probability"] for p in chunked.json()["predictions"]] == [p["probability"] for p in whole["predictions"]]
    _problem(c.post("/v1/models/fraud/predict", content=_chunks(b"[" + b"1," * 3_000_000 + b"1]", 65_536)), 413, "MiB")
    wrong = c.get("/v1/models/fraud/predict")
    _problem(wrong, 405, "POST")
    assert wrong.headers["allow"] == "POST"
    assert c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 200  # the server goes on


def test_the_server_swaps_models_when_production_moves_without_failing_requests(server):
    failures, versions, stop = [], set(), threading.Event()

    def fire() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                r = client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD)
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions.add(r.json()["version"])

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with Home(server.home) as home:
            for step in range(6):
                time.sleep(0.15)
                if step % 2 == 0:
                    home.registry.promote("fraud", 2, actor="test")
                else:
                    home.registry.rollback("fraud", actor="test")
            time.sleep(0.15)
            home.registry.promote("fraud", 2, actor="test")
        deadline = time.monotonic() + 5
        while server.client.get("/readyz").json()["serving"] != {"fraud": 2}:
            assert time.monotonic() < deadline, "server never picked up v2"
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert versions == {1, 2}


def test_a_corrupt_artifact_is_never_loaded_and_the_old_version_keeps_serving(server):
    with Home(server.home) as home:
        v3 = home.registry.version("fraud", 2)
        path = home.artifacts.path(v3.artifact_sha256)
        path.write_bytes(path.read_bytes()[:100])  # truncated on disk
        home.registry.promote("fraud", 2, actor="test")
    time.sleep(0.5)
    r = server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD)
    assert r.status_code == 200 and r.json()["version"] == 1
    assert server.client.get("/readyz").json()["serving"] == {"fraud": 1}


def test_a_running_server_reads_features_another_process_materializes(server, tmp_path):
    import polars as pl

    from tests.test_cli import appliance

    cutoff = datetime(2026, 10, 19, 12, tzinfo=UTC)
    live = pl.read_parquet(bundled_spec_path().parent / "live.parquet").filter(pl.col("event_time") < cutoff)
    busiest = live["user_id"].value_counts(sort=True)["user_id"][0]

    def predict(at: str) -> float:
        request = {**SAMPLE_RECORD, "user_id": busiest, "event_time": at}
        return server.client.post("/v1/models/fraud/predict", json=request).json()["probability"]

    def stored() -> tuple:
        with Home(server.home) as home:
            return home.online.read(namespace("fraud", home.spec("fraud").features), [busiest])[busiest]

    predict("2026-10-19T12:00:00Z")  # an answered request is an event: the server moves the row by it
    deadline = time.monotonic() + 10
    while stored()[0] != round(datetime(2026, 10, 19, 12, tzinfo=UTC).timestamp() * 1_000_000):
        assert time.monotonic() < deadline, "the server did not move the row"
        time.sleep(0.02)
    served = stored()
    live.write_parquet(tmp_path / "live-days.parquet")
    assert appliance(server.home, "ingest", "fraud", str(tmp_path / "live-days.parquet")).returncode == 0
    assert stored() == served  # ingesting alone changes nothing online
    before = predict("2026-10-19T12:00:01Z")
    materialized = appliance(server.home, "features", "materialize", "fraud")
    assert materialized.returncode == 0, materialized.stderr
    # The user's live transactions (up to 3.5 days of them) now count in the request's features.
    after = predict("2026-10-19T12:00:02Z")
    assert after != before

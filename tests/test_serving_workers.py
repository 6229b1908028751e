"""Serving across cores: a real `appliance up --headless --workers 2` on a loopback port, over a small data set of
integer subscriber keys (tests/own_data.py). What is one decision stays one across the two workers: promotions,
revocations, rate limits, canary assignment, the prediction log; a worker killed is restarted, the other answers on.
Each answer names its worker's pid (x-appliance-worker), which tells the workers apart."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appliance.home import Home
from appliance.serving.server import HEARTBEAT_SECONDS
from tests.conftest import in_production, ok
from tests.own_data import write_subscriptions
from tests.test_service_env import _free_port, _ready

WORKERS = 2
ATTEMPTS = 400  # requests sent before a test gives up waiting for something to show on every worker


@dataclass
class Appliance:
    url: str
    home: Path
    model: str
    record: dict
    output: Path
    key: str  # a predict key for the tests that are not about keys (keys exist: every request needs one)
    versions: tuple[int, int] = (1, 2)

    def predict(self, record: dict | None = None, key: str | None = None) -> httpx.Response:
        """One request on a connection of its own (the kernel hands each new connection to either worker)."""
        headers = {"authorization": f"Bearer {key or self.key}"}
        return httpx.post(f"{self.url}/v1/models/{self.model}/predict", json=record or self.record, headers=headers)

    def serving(self) -> int:
        """The version in production, as the registry says."""
        with Home(self.home) as home:
            return next(m.production for m in home.registry.models() if m.name == self.model)


def _token(created: str) -> str:
    """The token `keys create` printed (its last line)."""
    return created.strip().splitlines()[-1]


def worker(answer: httpx.Response) -> int:
    return int(answer.headers["x-appliance-worker"])


def until_every_worker(send, done) -> dict[int, list[httpx.Response]]:
    """Send (``send()``) until ``done(answers by worker)``, from two threads so that both workers get requests."""
    seen: dict[int, list[httpx.Response]] = {}
    lock = threading.Lock()

    def client() -> None:
        for _ in range(ATTEMPTS // 2):
            answer = send()
            with lock:
                seen.setdefault(worker(answer), []).append(answer)
                if done(seen):
                    return

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert done(seen), {pid: [a.status_code for a in answers[-3:]] for pid, answers in seen.items()}
    return seen


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    tmp = tmp_path_factory.mktemp("workers")
    spec = write_subscriptions(tmp / "subs", days=12, per_day=150)
    home = tmp / "home"
    model = in_production(home, spec)
    ok(home, "train", model)  # v2: a version to promote and to canary
    key = _token(ok(home, "keys", "create", "--scope", "predict", "--rate", "100000"))
    port = _free_port()
    output = tmp / "up.out"
    with output.open("w") as out:  # a file, not a pipe: the server's log lines must never block it
        up = subprocess.Popen(
            [sys.executable, "-m", "appliance", "--home", str(home), "up", "--headless"]
            + ["--workers", str(WORKERS), "--port", str(port)],
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "APPLIANCE_LOG_FORMAT": "text"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while _ready(url) is None:
            assert up.poll() is None, output.read_text()
            time.sleep(0.3)
        curl = next(line for line in output.read_text().splitlines() if line.strip().startswith("curl "))
        record = json.loads(re.search(r"-d '(.*)'$", curl).group(1))  # type: ignore[union-attr]
        yield Appliance(url, home, model, record, output, key)
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    assert code == 0, output.read_text()


def test_both_workers_serve_a_promotion_and_no_request_fails_under_load(appliance):
    old = appliance.serving()
    new = next(v for v in appliance.versions if v != old)
    stop = threading.Event()
    failures: list[object] = []

    def load() -> None:
        while not stop.is_set():
            try:
                answer = appliance.predict()
                if answer.status_code != 200:
                    failures.append(answer.text)
            except httpx.TransportError as e:
                failures.append(e)

    clients = [threading.Thread(target=load) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        until_every_worker(appliance.predict, lambda seen: len(seen) == WORKERS)  # both serve under load
        ok(appliance.home, "promote", appliance.model, str(new), "--reason", "workers test")
        # every worker answers the new version; none answers the old one after it did
        moved: dict[int, bool] = {}

        def all_moved(seen: dict[int, list[httpx.Response]]) -> bool:
            for pid, answers in seen.items():
                version = answers[-1].json()["version"]
                assert not (moved.get(pid) and version == old), f"worker {pid} went back to v{old}"
                moved[pid] = moved.get(pid, False) or version == new
            return len(moved) == WORKERS and all(moved.values())

        until_every_worker(appliance.predict, all_moved)
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert failures == []


def test_a_revoked_key_is_refused_by_every_worker(appliance):
    created = ok(appliance.home, "keys", "create", "--scope", "predict", "--name", "revoked-later")
    key_id = re.search(r"created key (\S+)", created).group(1)  # type: ignore[union-attr]
    token = _token(created)
    send = lambda: appliance.predict(key=token)  # noqa: E731

    def every(status: int):
        return lambda seen: len(seen) == WORKERS and all(a[-1].status_code == status for a in seen.values())

    until_every_worker(send, every(200))
    ok(appliance.home, "keys", "revoke", key_id)
    until_every_worker(send, every(401))
    again = [send() for _ in range(10)]
    assert {a.status_code for a in again} == {401}, [a.text for a in again]
    assert "was revoked" in again[0].json()["detail"]


def test_a_keys_rate_limit_holds_across_workers(appliance):
    rate = 5
    token = _token(ok(appliance.home, "keys", "create", "--scope", "predict", "--rate", str(rate)))
    send = lambda: appliance.predict(key=token)  # noqa: E731
    until_every_worker(send, lambda seen: len(seen) == WORKERS and all(a[-1].status_code != 401 for a in seen.values()))
    time.sleep(1.0)  # the bucket refills: the burst below starts from a full one (rate tokens)

    started = time.monotonic()
    seen = until_every_worker(send, lambda seen: sum(len(a) for a in seen.values()) >= 3 * rate)
    elapsed = time.monotonic() - started
    answers = [a for by_worker in seen.values() for a in by_worker]
    accepted = sum(a.status_code == 200 for a in answers)
    assert {a.status_code for a in answers} == {200, 429}, [a.text for a in answers]
    # one bucket for both workers: the burst plus what refilled while sending (each worker's own would let
    # through about twice the burst)
    assert rate <= accepted <= rate + int(rate * elapsed) + 1, (accepted, elapsed)
    assert len(seen) == WORKERS


def test_a_canarys_assignment_is_sticky_across_workers(appliance):
    production = appliance.serving()
    candidate = next(v for v in appliance.versions if v != production)
    key = "subscriber"  # the spec's entity key: a canary splits by it
    ok(appliance.home, "deploy", appliance.model, "start", "canary", "--version", str(candidate))
    try:
        ok(appliance.home, "deploy", appliance.model, "advance", "--force", "--reason", "half the traffic")
        shown = ok(appliance.home, "deploy", appliance.model, "advance", "--force", "--reason", "half the traffic")
        percent = float(re.search(r"— ([\d.]+) % of traffic", shown).group(1))  # type: ignore[union-attr]

        def models() -> httpx.Response:
            return httpx.get(f"{appliance.url}/v1/models", headers={"authorization": f"Bearer {appliance.key}"})

        def at_step(seen: dict[int, list[httpx.Response]]) -> bool:  # each worker has read the last step
            shares = [a[-1].json()[0]["deployment"] for a in seen.values()]
            return len(seen) == WORKERS and all(d and d["traffic_percent"] == percent for d in shares)

        until_every_worker(models, at_step)
        arms: dict[object, dict[int, set[int]]] = {}
        for entity in range(1, 25):
            record = {**appliance.record, key: entity}
            seen = until_every_worker(lambda: appliance.predict(record), lambda seen: len(seen) == WORKERS)  # noqa: B023
            arms[entity] = {pid: {a.json()["version"] for a in answers} for pid, answers in seen.items()}
    finally:
        ok(appliance.home, "deploy", appliance.model, "abort", "--reason", "test over")
    for entity, by_worker in arms.items():
        versions = set().union(*by_worker.values())
        assert len(versions) == 1, (entity, by_worker)  # one arm, whichever worker answered
    chosen = {next(iter(set().union(*w.values()))) for w in arms.values()}
    assert chosen == {production, candidate}, arms  # both arms were drawn: the split is real


def test_the_log_has_a_row_for_every_answered_request(appliance):
    ids: list[str] = []
    seen = until_every_worker(appliance.predict, lambda seen: sum(len(a) for a in seen.values()) >= 60)
    for answers in seen.values():
        ids += [a.json()["request_id"] for a in answers if a.status_code == 200]
    assert len(seen) == WORKERS and len(ids) >= 60
    missing = set(ids)
    for _ in range(100):  # each worker's writer commits within its linger
        log = sqlite3.connect(appliance.home / "predictions.db")
        try:
            missing -= {r for (r,) in log.execute("SELECT request_id FROM predictions")}
        finally:
            log.close()
        if not missing:
            break
        time.sleep(0.1)
    assert not missing, f"{len(missing)} of {len(ids)} answered requests have no row"


def test_a_killed_worker_loses_no_answer_of_the_other_and_is_restarted(appliance):
    # enough answers from each worker that losing the victim's counts could not hide behind the new worker's
    seen = until_every_worker(
        appliance.predict, lambda seen: len(seen) == WORKERS and min(map(len, seen.values())) >= 40
    )
    victim, survivor = sorted(seen)
    stop = threading.Event()
    answers: list[httpx.Response] = []
    failed: list[Exception] = []

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append(appliance.predict())
            except httpx.TransportError as e:  # in flight on the victim when it died
                failed.append(e)

    counted_before = metrics_view(appliance)[0]  # both workers' counts, each published
    clients = [threading.Thread(target=load) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        os.kill(victim, signal.SIGKILL)
        restarted = until_every_worker(
            appliance.predict, lambda seen: any(pid not in (victim, survivor) for pid in seen) and survivor in seen
        )
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert {a.status_code for a in answers} == {200}, {a.text for a in answers if a.status_code != 200}
    assert len(failed) <= len(clients), failed  # at most the requests in flight on the victim
    assert survivor in {worker(a) for a in answers}  # the other worker answered on, every answer a 200
    assert len(restarted) == WORKERS
    # the restarted worker counts on from its seat's last counts: the sum holds the victim's counts still
    survivor_since = sum(worker(a) == survivor for a in answers) + len(restarted[survivor])
    assert metrics_view(appliance, at_least=counted_before + survivor_since)[0] >= counted_before + survivor_since
    assert re.search(
        rf"serving worker \d \(pid {victim}\) exited with code -9; starting it again", appliance.output.read_text()
    )


def metrics_view(appliance, at_least: int = 0) -> tuple[int, int, int]:
    """Requests answered, latency observations and workers answering, as every worker's /metrics says alike
    once it counts ``at_least`` requests."""

    def scrape() -> httpx.Response:
        time.sleep(0.02)  # workers publish their counts each heartbeat: look a few times a heartbeat
        return httpx.get(f"{appliance.url}/metrics", headers={"authorization": f"Bearer {appliance.key}"})

    def counted(answer: httpx.Response) -> tuple[int, int, int]:
        text = answer.text
        requests = sum(int(n) for n in re.findall(r"^appliance_requests_total\{[^}]*\} (\d+)$", text, re.M))
        observed = sum(
            int(n) for n in re.findall(r"^appliance_request_latency_seconds_count\{[^}]*\} (\d+)$", text, re.M)
        )
        workers = int(re.search(r"^appliance_serving_workers (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
        return requests, observed, workers

    def settled(seen: dict[int, list[httpx.Response]]) -> bool:
        views = {counted(answers[-1]) for answers in seen.values()}
        return len(seen) == WORKERS and len(views) == 1 and next(iter(views))[0] >= at_least

    def agreed() -> tuple[int, int, int]:
        return counted(next(iter(until_every_worker(scrape, settled).values()))[-1])

    # Both workers can agree on stale counts (each adds the other's last published ones): the view holds once
    # it is the same a heartbeat later, when every count answered before it has been published.
    view = agreed()
    for _ in range(20):
        time.sleep(1.5 * HEARTBEAT_SECONDS)
        again = agreed()
        if again == view:
            return view
        view = again
    raise AssertionError(f"the workers' /metrics never held still: last {view}")


def test_metrics_are_one_view_over_every_worker(appliance):
    before = metrics_view(appliance)
    sent = until_every_worker(appliance.predict, lambda seen: sum(len(a) for a in seen.values()) >= 40)
    assert len(sent) == WORKERS  # both workers counted some of them
    total = sum(len(a) for a in sent.values())
    # counters and histograms added across workers: the whole of it, seen from either worker
    assert metrics_view(appliance, at_least=before[0] + total) == (before[0] + total, before[1] + total, WORKERS)

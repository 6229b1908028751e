"""Shared by the benchmarks: a trained data directory, servers in their own processes, and a
minimal load generator (asyncio, keep-alive HTTP/1.1, requests encoded before the clock starts)
that runs in processes of its own, so neither it nor the server shares a GIL with the other.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # responses that were not 200
    statuses: dict[int, int]
    server_cpu_us: float | None = None  # the server process's CPU time (all threads) per answered request

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def line(self, label: str) -> str:
        bad = f"  non-200: {self.failures}" if self.failures else ""
        cpu = f"   server CPU {self.server_cpu_us:4.0f} µs/req" if self.server_cpu_us is not None else ""
        return (
            f"{label:<34} {self.per_second:9.0f} req/s   p50 {self.p50_ms:7.2f} ms   p99 {self.p99_ms:7.2f} ms"
            f"{cpu}{bad}"
        )


def encode_post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One complete HTTP/1.1 POST request, ready to write to a socket."""
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _client(
    port: int,
    requests: list[bytes],
    offset: int,
    warm_until: float,
    stop_at: float,
    latencies: list[float],
    statuses: dict[int, int],
    answers: list | None,
    total: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while True:
            started = time.monotonic()
            if started >= stop_at:
                return
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            start = head.lower().index(b"content-length:") + 15
            body = await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
            total[0] += 1
            if started >= warm_until:
                latencies.append(time.monotonic() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if answers is not None and status == 200:
                    answers.append(body)
    finally:
        writer.close()


def _load(
    port: int, requests: list[bytes], connections: range, warmup: float, seconds: float, keep: bool, ready, go, out
) -> None:
    async def main() -> tuple:
        latencies, statuses, answers, total = [], {}, ([] if keep else None), [0]
        ready.set()
        go.wait()  # every loader process starts its clock at the same moment (monotonic is system-wide)
        now = time.monotonic()
        warm_until, stop_at = now + warmup, now + warmup + seconds
        await asyncio.gather(
            *(
                _client(port, requests, n * 7919, warm_until, stop_at, latencies, statuses, answers, total)
                for n in connections
            )
        )
        return latencies, statuses, answers, total[0]

    out.send(asyncio.run(main()))


def loader_processes(concurrency: int) -> int:
    """How many processes drive the load: one per 4 cores, so on a big machine the load generator (one
    asyncio process is busy on a core at a fast endpoint's rates) is not what is measured, and on a small
    one it takes a single core from the server."""
    import os

    return max(1, min(concurrency, (os.cpu_count() or 1) // 4))


def run_load(
    port: int,
    requests: list[bytes],
    concurrency: int,
    seconds: float = 3.0,
    warmup: float = 1.0,
    keep_answers: bool = False,
    server_pid: int | None = None,
    processes: int | None = None,
) -> tuple[LoadResult, list[bytes] | None]:
    """Drive a server from separate processes (``loader_processes`` unless given) with ``concurrency``
    keep-alive connections in all; with ``server_pid``, also measure the server's CPU time per request, its
    children's (the prediction log's writer) included (warm-up included: CPU time, unlike throughput,
    does not depend on what else the machine runs)."""
    import psutil

    spawn = mp.get_context("spawn")
    processes = processes or loader_processes(concurrency)
    go, loaders = spawn.Event(), []
    for k in range(processes):
        receive, send = spawn.Pipe(duplex=False)
        ready = spawn.Event()
        proc = spawn.Process(
            target=_load,
            args=(port, requests, range(k, concurrency, processes), warmup, seconds, keep_answers, ready, go, send),
        )
        proc.start()
        loaders.append((proc, receive, ready))
    for _, _, ready in loaders:
        ready.wait()
    server = psutil.Process(server_pid) if server_pid else None
    # The server and its children (the prediction log's writer process): what a request costs the machine.
    measured = [server, *server.children(recursive=True)] if server else []
    cpu_before = sum(sum(p.cpu_times()[:2]) for p in measured)
    go.set()
    latencies, statuses, answers, total = [], {}, ([] if keep_answers else None), 0
    for proc, receive, _ in loaders:
        part_latencies, part_statuses, part_answers, part_total = receive.recv()
        proc.join()
        latencies += part_latencies
        for status, n in part_statuses.items():
            statuses[status] = statuses.get(status, 0) + n
        if answers is not None:
            answers += part_answers
        total += part_total
    cpu_us = (sum(sum(p.cpu_times()[:2]) for p in measured) - cpu_before) / max(total, 1) * 1e6 if server else None
    latencies.sort()
    n = len(latencies)
    p50 = latencies[n // 2] * 1000 if n else 0.0
    p99 = latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0
    failures = sum(v for k, v in statuses.items() if k != 200)
    return LoadResult(n, seconds, p50, p99, failures, statuses, cpu_us), answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(factory: str, args: tuple, port: int) -> None:
    import importlib
    import logging

    import uvicorn

    logging.basicConfig(level=logging.WARNING)
    if factory == "appliance.serving.app:create_app":  # served exactly as `appliance serve` serves it
        from appliance.serving.server import server_config

        uvicorn.Server(server_config(args[0], "127.0.0.1", port)).run()
        return
    module, name = factory.rsplit(":", 1)
    app = getattr(importlib.import_module(module), name)(*args)
    # proxy_headers off, as the appliance serves: its header middleware is a cost the appliance does not pay
    uvicorn.run(app, host="127.0.0.1", port=port, proxy_headers=False, log_level="warning", access_log=False)


class ServerProcess:
    """A server in its own process, run as ``target(*args, port)``, up once /healthz answers; SIGTERM stops it."""

    def __init__(self, target, *args: object):
        self.port = free_port()
        self.proc = mp.get_context("spawn").Process(target=target, args=(*args, self.port))

    def __enter__(self) -> ServerProcess:
        self.proc.start()
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline or not self.proc.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join(60)

    @property
    def pid(self) -> int:
        return self.proc.pid


class Server(ServerProcess):
    """A uvicorn server in its own process, built by ``module:function(*args)``; stopped with SIGTERM."""

    def __init__(self, factory: str, *args: object):
        super().__init__(_serve, factory, args)


def mlp_params(width: int) -> str:
    """The [training.params] of a wide MLP: 3 hidden layers of ``width``, one epoch."""
    params = {"epochs": 1, "hidden": width, "layers": 3, "batch_size": 2048, "learning_rate": 0.003}
    return "[training.params]\n" + "\n".join(f"{k} = {v}" for k, v in params.items()) + "\n\n"


def trained_home(folder: Path, trees: int | None = None, mlp_width: int | None = None) -> Path:
    """A data directory with the sample model trained twice (v1 production, v2 candidate); reused if there.

    ``mlp_width``: a wide neural network instead (3 hidden layers of that width, one epoch), whose
    single row costs ONNX Runtime far more than a tree ensemble's: the case micro-batching is for.
    Its gates are overridden — the benchmark measures serving, not accuracy."""
    from appliance.config import bundled_spec_path
    from appliance.features.online import materialize_model
    from appliance.home import Home
    from appliance.layout import Layout
    from appliance.spec import load_spec
    from appliance.training.pipeline import train

    home_dir = folder / "home"
    if Layout(home_dir).exists():
        return home_dir
    spec_dir = folder / "spec"
    spec_dir.mkdir(parents=True, exist_ok=True)
    for data in bundled_spec_path().parent.iterdir():
        if data.suffix in (".parquet", ".toml") and not (spec_dir / data.name).exists():
            (spec_dir / data.name).symlink_to(data)
    spec_path = spec_dir / "fraud.toml"
    text = bundled_spec_path().read_text()
    if trees:
        text = text.replace("num_boost_round = 300", f"num_boost_round = {trees}")
    if mlp_width:
        params = text.index("[training.params]")
        text = (text[:params] + mlp_params(mlp_width) + text[text.index("[training.search]") :]).replace(
            'trainer = "lightgbm"', 'trainer = "mlp"'
        )
    spec_path.unlink()
    spec_path.write_text(text)
    with Home(home_dir) as home:
        spec = load_spec(spec_path)
        home.add_model(spec)
        train(home, spec, say=lambda line: None)
        home.registry.promote("fraud", 1, actor="bench", override=bool(mlp_width), reason="benchmark")
        train(home, spec, say=lambda line: None)
        materialize_model(home, spec)  # requests carry the user id; the rest comes from the online store
    return home_dir


def sample_records(count: int = 2000) -> list[dict]:
    """Live sample traffic as request records: the entity key, the event time and the request-time
    features (the online store completes the rest, as in production)."""
    import polars as pl

    from appliance.config import bundled_spec_path

    folder = bundled_spec_path().parent
    live = (
        pl.read_parquet(folder / "live.parquet")
        .head(count)
        .with_columns(event_time=pl.col("event_time").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    )
    fields = ["user_id", "event_time", "amount", "merchant_category", "hour", "is_foreign"]
    return live.select(fields).to_dicts()


def predict_requests(home_dir: Path, records: list[dict]) -> list[bytes]:
    """Pre-encoded predict requests carrying a fresh unlimited predict key."""
    import msgspec

    from appliance.gateway.keys import create_key
    from appliance.home import Home

    with Home(home_dir) as home:
        _, token = create_key(home.conn, ["predict"], name="bench", rate_per_second=1e9, actor="bench")
    return [
        encode_post("/v1/models/fraud/predict", msgspec.json.encode(r), {"Authorization": f"Bearer {token}"})
        for r in records
    ]


def bench_arguments(doc: str, seconds: float) -> argparse.ArgumentParser:
    """The options every benchmark takes: case length, model size, and a data directory to reuse."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--trees", type=int, default=300, help="boosting rounds of the benchmarked model")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse (or create) a trained data directory here")
    return parser


def bench_home(args: argparse.Namespace) -> Path:
    """The trained data directory the options ask for."""
    return trained_home(args.workdir or Path(tempfile.mkdtemp(prefix="bench-")), args.trees)

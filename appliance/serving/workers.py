"""Serving across cores: one supervisor, N worker processes answering on one listening socket.

The supervisor (the `appliance up` process, which also runs the scheduler) binds the port once and spawns
the workers, each serving the whole API on that socket (the kernel hands each connection to one of them).
What is one decision stays one (``serving.shared``): every worker re-reads keys, deployments and aliases
each tick, as a single server does, so a promotion or a revocation reaches all of them within a tick; canary
assignment is a hash of the request's key (the same on every worker); rate-limit buckets are shared; each
worker's writer appends to the one prediction log (SQLite's write lock, taken up front with a busy timeout,
serializes them); canaries are judged here, once, on all of that log. The supervisor restarts a worker that
dies, stops them all on SIGINT/SIGTERM (each finishes its requests in flight), tells systemd READY once every
worker is ready, and feeds its watchdog only while every worker beats.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

from appliance import systemd
from appliance.errors import Conflict
from appliance.serving.app import REFRESH_SECONDS, ServingApp
from appliance.serving.server import GRACEFUL_SECONDS, ApiServer, backlog, file_limit, server_config
from appliance.serving.shared import STALE_HEARTBEAT_S, WorkerLink

log = logging.getLogger(__name__)

RESERVED_CORES = 2  # kept for training and monitoring, which run beside the API
MAX_WORKERS = 8
WATCH_SECONDS = 0.2  # how often the supervisor looks for a worker that died


def default_workers() -> int:
    """The cores this process may use, less those reserved for training and monitoring: at most
    ``MAX_WORKERS``, at least 1 (one process, as on a machine of two cores)."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0)) - RESERVED_CORES))


class Supervisor:
    """N serving workers on one port: ``start``, then ``stop`` (from a signal handler's caller or the dashboard)."""

    def __init__(self, home_root: Path, host: str, port: int, workers: int, refresh_seconds: float = REFRESH_SECONDS):
        self.root = Path(home_root).expanduser().resolve()
        self.host, self.port, self.count = host, port, workers
        self.refresh_seconds = refresh_seconds
        self.stopping = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess] = []
        self._threads: list[threading.Thread] = []
        self._socket: socket.socket | None = None
        self._folder: Path | None = None
        self._link: WorkerLink | None = None

    def start(self, timeout: float = 120.0) -> Supervisor:
        """Bind the port, start the workers and wait until each serves; a port it cannot bind is a Conflict."""
        self._socket = listening_socket(self.host, self.port)
        self._folder = Path(tempfile.mkdtemp(prefix="appliance-workers-"))
        link = self._link = WorkerLink.create(self.count, self._folder)
        self._processes = [self._spawn(index) for index in range(self.count)]
        self._threads = [
            threading.Thread(target=self._watch, name="serving-supervisor", daemon=True),
            threading.Thread(target=self._judge, name="canary-analysis", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        started = time.monotonic()
        # a worker beats once its server listens; until then its heartbeat is its start time
        while not self.stopping.is_set() and min(link.heartbeats) <= started:
            if time.monotonic() - started > timeout:
                self.stop()
                raise Conflict(f"the API's {self.count} workers did not start within {timeout:g} s; see the log")
            time.sleep(0.05)
        return self

    def healthy(self, stale: float) -> bool:
        """Whether every worker beat within ``stale`` seconds (what keeps systemd's watchdog fed)."""
        return self._link is not None and self._link.beating(stale) == self.count

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def stop(self) -> None:
        """Stop every worker, each finishing its requests in flight; then release the port."""
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown, the prediction log written
        deadline = time.monotonic() + GRACEFUL_SECONDS + 5
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("serving worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        if self._socket is not None:
            self._socket.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _spawn(self, index: int) -> BaseProcess:
        assert self._link is not None and self._socket is not None
        process = self._context.Process(
            target=_work,
            args=(self.root, self.host, self.port, self._socket, self._link.seat(index), self.refresh_seconds),
            name=f"appliance-worker-{index}",
        )
        process.start()
        return process

    def _watch(self) -> None:
        # Restart a worker that died; tell systemd READY the first time every worker is ready.
        assert self._link is not None
        announced = False
        while not self.stopping.wait(WATCH_SECONDS):
            for index, process in enumerate(self._processes):
                if not process.is_alive() and not self.stopping.is_set():
                    log.warning(
                        "serving worker %d (pid %s) exited with code %s; starting it again",
                        index,
                        process.pid,
                        process.exitcode,
                    )
                    self._processes[index] = self._spawn(index)
            if not announced and self._link.all_ready():
                systemd.notify("READY=1", f"STATUS=serving on {self.host}:{self.port} with {self.count} workers")
                announced = True

    def _judge(self) -> None:
        # Canaries judged once, here, on every worker's answers in the prediction log.
        from appliance.deployment.deployments import analyze_canaries
        from appliance.home import Home
        from storage.prediction_log import PredictionStore

        with Home(self.root) as home:
            store = PredictionStore(home.layout.predictions_db)
            try:
                while not self.stopping.wait(self.refresh_seconds):
                    try:
                        analyze_canaries(home, store)
                    except Exception:  # keep judging: a locked or briefly unreadable database must not stop it
                        log.exception("canary analysis failed; retrying")
            finally:
                store.close()


def serve_workers(home_root: Path, host: str, port: int, workers: int) -> None:
    """Serve with ``workers`` processes until SIGINT or SIGTERM, finishing requests in flight, then return."""
    supervisor = Supervisor(home_root, host, port, workers)
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda *_: supervisor.stopping.set()) for s in stops}
    interval = systemd.watchdog_interval()
    watchdog = None
    if interval:
        stale = max(STALE_HEARTBEAT_S, 2 * interval)
        watchdog = systemd.Watchdog(lambda: supervisor.healthy(stale), interval).start()
    try:
        supervisor.start()
        while not supervisor.stopping.wait(1.0):
            pass
    finally:
        systemd.notify("STOPPING=1", "STATUS=finishing requests in flight")
        supervisor.stop()
        if watchdog:
            watchdog.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def listening_socket(host: str, port: int) -> socket.socket:
    """The port bound once for every worker (as uvicorn binds it: SO_REUSEADDR); a taken port is a Conflict."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise Conflict(f"the API could not start on {host}:{port} ({e.strerror}); choose another with --port") from None
    sock.listen(backlog(file_limit()))
    return sock


def _work(root: Path, host: str, port: int, sock: socket.socket, link: WorkerLink, refresh_seconds: float) -> None:
    """A worker process: the whole API on the supervisor's socket until SIGTERM (or its supervisor is gone)."""
    from appliance.logs import configure_logging

    configure_logging()
    supervisor = os.getppid()
    config = server_config(root, host, port, refresh_seconds)
    config.headers = [("x-appliance-worker", str(os.getpid()))]  # each answer names its worker
    state = cast(ServingApp, config.app).predict.state
    state.join(link)
    server = ApiServer(config)
    server.announce = False

    def beat() -> None:
        link.beat(state.ready())
        try:
            state.publish()
        except OSError as e:  # /metrics misses this worker's latest counts; the beat (and the watchdog) go on
            log.warning("serving worker could not publish its counts: %s", e)
        if os.getppid() != supervisor:  # the supervisor was killed: nothing would restart or stop this worker
            server.should_exit = True

    server.on_beat = beat
    server.run(sockets=[sock])

"""Running the API under uvicorn, as a systemd notify service when systemd starts it; under several serving
workers, each worker's server (``serving.workers`` supervises them and speaks to systemd)."""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import uvicorn

from appliance import systemd
from appliance.errors import Conflict
from appliance.serving.app import REFRESH_SECONDS, create_app
from appliance.serving.http_protocol import HttpProtocol

HEARTBEAT_SECONDS = 1.0
GRACEFUL_SECONDS = 10  # how long a stopping server finishes requests in flight
FILE_LIMIT = 65_536  # the descriptors a server asks for: its soft limit is raised to this (or to the hard limit)
FILES_OF_ITS_OWN = 256  # descriptors kept from connections (a quarter of the limit, if more): for the server's own
# files (databases, models, the log writer's pipes; a few dozen) and a burst of accepts


class ApiServer(uvicorn.Server):
    """uvicorn's server stopping cleanly on SIGTERM, beating for the watchdog, and speaking to systemd."""

    heartbeat = 0.0
    announce = True  # a worker's server leaves READY and STOPPING to its supervisor
    on_beat: Callable[[], None] | None = None  # what a worker does each heartbeat, on the event loop

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the process would die by the
        # signal; a clean stop should exit 0 instead. Off the main thread (under the dashboard)
        # Python allows no signal handlers: the dashboard owns the terminal and stops the server.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._stop) for s in stops}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop(self, signum: int, frame: object) -> None:
        if self.should_exit and signum == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C stops without waiting
        self.should_exit = True

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        self._beats = asyncio.create_task(self._beat())
        config = self.config
        if self.announce:
            systemd.notify("READY=1", f"STATUS=serving on {config.host}:{config.port}")

    async def shutdown(self, sockets=None) -> None:
        if self.announce:
            systemd.notify("STOPPING=1", "STATUS=finishing requests in flight")
        await super().shutdown(sockets)
        if self.force_exit:
            # A second Ctrl-C cut the wait for requests in flight, and uvicorn then skips the app's shutdown too.
            # That shutdown writes the queued predictions and stops the log's writer process (without it the
            # interpreter's exit waits on that process forever), so it runs all the same.
            await self.lifespan.shutdown()

    async def _beat(self) -> None:
        # The watchdog pings only while this loop keeps beating: a wedged event loop gets restarted.
        while not self.should_exit:
            self.heartbeat = time.monotonic()
            if self.on_beat is not None:
                self.on_beat()
            await asyncio.sleep(HEARTBEAT_SECONDS)


def serve(home_root: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until SIGINT or SIGTERM, finishing requests in flight, then return."""
    server = ApiServer(server_config(home_root, host, port))
    interval = systemd.watchdog_interval()
    watchdog = None
    if interval:
        stale = max(3 * HEARTBEAT_SECONDS, 2 * interval)
        watchdog = systemd.Watchdog(lambda: time.monotonic() - server.heartbeat < stale, interval).start()
    try:
        server.run()
    finally:
        if watchdog:
            watchdog.stop()


class BackgroundServer:
    """The API served from a daemon thread while something else (the dashboard) owns the main thread."""

    def __init__(self, home_root: Path, host: str = "127.0.0.1", port: int = 8000):
        self.server = ApiServer(server_config(home_root, host, port))
        self._thread = threading.Thread(target=self._run, name="api-server", daemon=True)

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        """Start serving and wait until it listens; a port it cannot bind is a Conflict."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            self.stop()
            config = self.server.config
            raise Conflict(
                f"the API could not start on {config.host}:{config.port} (is the port in use? "
                "choose another with --port)"
            )
        return self

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit:
            pass  # uvicorn exits when it cannot bind; start() reports that

    def stop(self, timeout: float = 15.0) -> None:
        """Finish requests in flight (closing the prediction log), then return."""
        self.server.should_exit = True
        self._thread.join(timeout)


def server_config(home_root: Path, host: str, port: int, refresh_seconds: float = REFRESH_SECONDS) -> uvicorn.Config:
    """How the API is served. ``proxy_headers`` is off: uvicorn would otherwise take the client's
    address from X-Forwarded-For on connections from 127.0.0.1, so any local process could pose as
    another peer — and the gateway's open-access rule and per-peer rate limit go by that address.
    A request's head is bounded in size and time, its body in time and each connection's phases too
    (``HttpProtocol``), its body's size by the app; connections past ``connection_cap`` are turned away."""
    app = create_app(home_root, refresh_seconds=refresh_seconds, exposed=not _loopback_only(host))
    limit = file_limit()
    protocol = partial(HttpProtocol, metrics=app.metrics, predict=app.predict, max_connections=connection_cap(limit))
    # uvicorn's annotation asks for a protocol class, but it only ever calls it: a partial builds the same one.
    # asyncio accepts up to the backlog's number of connections in one go, and a connection turned away holds
    # its descriptor for three turns of the loop, each of which may accept as many again: a backlog of an
    # eighth of what is kept from connections leaves half of it to the server's own files under a flood
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,  # type: ignore[arg-type]
        proxy_headers=False,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        log_config=None,
        backlog=backlog(limit),
    )


def backlog(limit: int) -> int:
    """The listening socket's backlog for a server with ``limit`` descriptors (server_config says why)."""
    return min(2048, kept_from_connections(limit) // 8)


def file_limit() -> int:
    """This process's descriptor limit, its soft limit first raised towards FILE_LIMIT as far as the hard
    one allows (a shell's default of 1,024 would hold about that many connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return FILE_LIMIT
    wanted = FILE_LIMIT if hard == resource.RLIM_INFINITY else min(FILE_LIMIT, hard)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
        except (ValueError, OSError):  # not allowed here: the limit stands
            pass
    return soft


def kept_from_connections(limit: int) -> int:
    """The descriptors a server with ``limit`` of them keeps for itself: FILES_OF_ITS_OWN, or a quarter."""
    return max(FILES_OF_ITS_OWN, limit // 4)


def connection_cap(limit: int) -> int:
    """How many connections a server with ``limit`` descriptors holds at once (more are answered 503), so
    that a flood of connections never keeps it from opening a promoted version or its databases."""
    return max(limit - kept_from_connections(limit), 1)


def _loopback_only(host: str) -> bool:
    """Whether a bind address reaches loopback only ("localhost" counts; "0.0.0.0" and names do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

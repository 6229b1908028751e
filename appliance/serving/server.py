"""Running the API under uvicorn, as a systemd notify service when systemd starts it."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import uvicorn

from appliance import systemd
from appliance.errors import Conflict
from appliance.serving.app import REFRESH_SECONDS, create_app
from appliance.serving.http_protocol import HttpProtocol

HEARTBEAT_SECONDS = 1.0


class _Server(uvicorn.Server):
    heartbeat = 0.0

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
        systemd.notify("READY=1", f"STATUS=serving on {config.host}:{config.port}")

    async def shutdown(self, sockets=None) -> None:
        systemd.notify("STOPPING=1", "STATUS=finishing requests in flight")
        await super().shutdown(sockets)

    async def _beat(self) -> None:
        # The watchdog pings only while this loop keeps beating: a wedged event loop gets restarted.
        while not self.should_exit:
            self.heartbeat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)


def serve(home_root: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until SIGINT or SIGTERM, finishing requests in flight, then return."""
    server = _Server(server_config(home_root, host, port))
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
        self.server = _Server(server_config(home_root, host, port))
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
            raise Conflict(f"the API could not start on {config.host}:{config.port} (is the port in use? "
                               "choose another with --port)")
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
    A request's head is bounded in size and time (``HttpProtocol``), its body by the app."""
    app = create_app(home_root, refresh_seconds=refresh_seconds, exposed=not _loopback_only(host))
    protocol = partial(HttpProtocol, metrics=app.metrics, predict=app.predict)
    # uvicorn's annotation asks for a protocol class, but it only ever calls it: a partial builds the same one
    return uvicorn.Config(app, host=host, port=port, http=protocol,  # type: ignore[arg-type]
                          proxy_headers=False, log_level="warning", access_log=False, timeout_graceful_shutdown=10,
                          log_config=None)


def _loopback_only(host: str) -> bool:
    """Whether a bind address reaches loopback only ("localhost" counts; "0.0.0.0" and names do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

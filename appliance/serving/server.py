"""Running the API under uvicorn, as a systemd notify service when systemd starts it."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appliance import systemd
from appliance.errors import Conflict
from appliance.serving.app import REFRESH_SECONDS, create_app
from appliance.serving.problems import problem_body

HEARTBEAT_SECONDS = 1.0
MAX_HEAD_BYTES = 64 * 1024      # a request line and headers past this are refused (431)
MAX_CONCURRENCY = 1_000         # connections or requests in flight past this are answered 503


class _BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on a request's head (request line and headers),
    which the parser would buffer without limit: one client could send gigabytes of one header.
    The head's pieces are counted as the parser completes them, and so is what arrives while a
    piece is still incomplete; past MAX_HEAD_BYTES the answer is 431 and the connection closes."""

    _parsed = 0         # bytes of the head's completed pieces
    _pending = 0        # bytes received since a piece last completed, while the head is incomplete
    _in_head = False
    _moved = False      # a message began or a piece completed in the chunk being parsed
    _refused = False    # answered 431: the rest of what the parser reads is ignored

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._moved, self._parsed, self._pending = True, True, 0, 0

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        self._moved = True
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value)
        self._moved = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._parsed > MAX_HEAD_BYTES and not self._refused:
            self._refuse()
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self._moved = False
        super().data_received(data)
        if self._in_head and not self._refused:
            self._pending = 0 if self._moved else self._pending + len(data)
            if self._parsed + self._pending > MAX_HEAD_BYTES:
                self._refuse()

    def _refuse(self) -> None:
        self._refused = True
        body = problem_body(431, "Request header fields too large",
                            f"the request line and headers are over {MAX_HEAD_BYTES // 1024} KiB; send less")
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                             b"content-type: application/problem+json\r\nconnection: close\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()


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

    def start(self, timeout: float = 60.0) -> "BackgroundServer":
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
    A request's head is bounded (MAX_HEAD_BYTES), its body by the app; past MAX_CONCURRENCY the
    server answers 503 rather than let memory grow with every connection."""
    app = create_app(home_root, refresh_seconds=refresh_seconds, exposed=not _loopback_only(host))
    return uvicorn.Config(app, host=host, port=port, http=_BoundedHeadProtocol, proxy_headers=False,
                          limit_concurrency=MAX_CONCURRENCY, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=10, log_config=None)


def _loopback_only(host: str) -> bool:
    """Whether a bind address reaches loopback only ("localhost" counts; "0.0.0.0" and names do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

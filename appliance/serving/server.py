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
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appliance import systemd
from appliance.errors import Conflict
from appliance.serving.app import REFRESH_SECONDS, create_app
from appliance.serving.problems import problem_body
from appliance.serving.prometheus import ServingMetrics

HEARTBEAT_SECONDS = 1.0
MAX_HEAD_BYTES = 64 * 1024      # a request line and headers (or a chunked body's trailers) past this: 431
HEAD_TIMEOUT_S = 30.0           # a connection's next head must be whole this long after it began: else 408


class _BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on a request's head, which the parser would buffer
    without limit (one client could send gigabytes of one header) and wait for without end (idle or
    trickling connections held forever).

    Size: the parser's completed pieces (request line, headers, trailers) are counted, and so is what
    arrives while none completes; past MAX_HEAD_BYTES the answer is 431 and the connection closes.
    Time: a head must be whole HEAD_TIMEOUT_S after the connection opened or the message began; else
    408 (or a silent close, if nothing came). A refusal waits for the answers of requests pipelined
    before it."""

    _parsed = 0         # bytes of the message's completed head pieces, trailers included
    _pending = 0        # bytes received since a piece last completed, while the message is incomplete
    _in_message = False
    _moved = False      # the parser made progress (a message began, a piece completed, body arrived) this chunk
    _dispatched = False  # the current message went to the app
    _refused = False    # answered (or about to answer) with a refusal: the rest is ignored
    _refusal: tuple[int, str, str] | None = None   # waiting for an earlier request's answer
    _head_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args, metrics: ServingMetrics, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message, self._moved, self._dispatched, self._parsed, self._pending = True, True, False, 0, 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        self._moved = True
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4  # ": " and CRLF
        self._moved = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        if self._parsed > MAX_HEAD_BYTES and not self._refused:
            self._refuse_too_large()
        if not self._refused:
            self._dispatched = True
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._moved = True
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if not self._refused:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self._moved = False
        super().data_received(data)
        if self._in_message and not self._refused and not self.transport.is_closing():
            self._pending = 0 if self._moved else self._pending + len(data)
            if self._parsed + self._pending > MAX_HEAD_BYTES:
                self._refuse_too_large()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None and not self.pipeline and self.cycle.response_complete:
            self._answer_and_close(*self._refusal)

    def _refuse_too_large(self) -> None:
        self._refuse(431, "Request header fields too large",
                     f"the request line and headers are over {MAX_HEAD_BYTES // 1024} KiB; send less")

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if not self._in_message:  # nothing came: there is no one to answer
            self.transport.close()
            return
        self._refuse(408, "Request timeout", f"the request's head was not whole within {HEAD_TIMEOUT_S:g} s")

    def _refuse(self, status: int, title: str, detail: str) -> None:
        self._refused = True
        if not self._dispatched and self.cycle is not None and not self.cycle.response_complete:
            self._refusal = (status, title, detail)  # an earlier request is being answered: it goes first
            self.flow.pause_reading()
            return
        self._answer_and_close(status, title, detail)

    def _answer_and_close(self, status: int, title: str, detail: str) -> None:
        self._refusal = None
        if not (self._dispatched and self.cycle.response_started):  # the app has not begun an answer
            self.metrics.observe_refused_head(status)
            body = problem_body(status, title, detail)
            self.transport.write(f"HTTP/1.1 {status} {title}\r\n".encode() + b"content-type: application/problem+json"
                                 b"\r\nconnection: close\r\ncontent-length: " + str(len(body)).encode()
                                 + b"\r\n\r\n" + body)
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


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
    A request's head is bounded in size and time (``_BoundedHeadProtocol``), its body by the app."""
    app = create_app(home_root, refresh_seconds=refresh_seconds, exposed=not _loopback_only(host))
    protocol = partial(_BoundedHeadProtocol, metrics=app.metrics)
    return uvicorn.Config(app, host=host, port=port, http=protocol, proxy_headers=False,
                          log_level="warning", access_log=False, timeout_graceful_shutdown=10, log_config=None)


def _loopback_only(host: str) -> bool:
    """Whether a bind address reaches loopback only ("localhost" counts; "0.0.0.0" and names do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

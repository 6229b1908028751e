"""The HTTP/1.1 protocol the API is served with: uvicorn's httptools protocol, with bounds on a
request's head, each answer sent in one write, and plain predict requests answered without ASGI.

Bounds. The parser would buffer a head without limit (one client could send gigabytes of one
header) and wait for it without end (idle or trickling connections held forever). The parser's
completed pieces (request line, headers, trailers) are counted, and so is what arrives while none
completes; past MAX_HEAD_BYTES the answer is 431 and the connection closes. A head must be whole
HEAD_TIMEOUT_S after the connection opened, its message began or the last message ended or was
answered; else 408 (or a silent close, if nothing came). A refusal waits for the answers of requests
pipelined before it. One timer per connection keeps the time, re-armed only when it fires: arming
one per request cost the event loop a heap push and a cancel each time.

One write per answer. uvicorn writes a response's head and its body separately: two system calls,
two TCP segments and two wake-ups of the client for every answer, the largest single cost of a
small one. ``_OneWriteAnswers`` holds the head until the body follows (in the same turn of the event
loop, as ASGI apps send them) and writes both at once: on 2 cores at concurrency 32 the full predict
path went from 305 to 248 µs of CPU per request (``scripts/bench/serve.py``).

Predict without ASGI. For every request uvicorn builds a request-response cycle, an event, a task
and ASGI messages, and checks each response header with a regular expression: tens of
microseconds, more than the appliance's own work for one record. A plain predict request (POST,
HTTP/1.1, a Content-Length body up to DIRECT_BODY_BYTES, no Expect, nothing before it on the
connection unanswered, the client reading its answers, the prediction log keeping up) is handed
from the parser's callbacks to ``PredictEndpoint.answer``, the same code the ASGI route runs, and
its answer written as uvicorn would write it. Everything else (chunked or large bodies, 100
Continue, backpressure, other methods) goes to the app. The requests one poll of the sockets brings
are then completed, encoded and scored together at the next turn (micro-batching). A ``_DirectCycle``
stands in for uvicorn's cycle, so pipelining, disconnects and graceful shutdown work as for any
request.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from appliance.serving.predict import PredictEndpoint, model_name
from appliance.serving.problems import problem_body
from appliance.serving.prometheus import ServingMetrics

MAX_HEAD_BYTES = 64 * 1024      # a request line and headers (or a chunked body's trailers) past this: 431
HEAD_TIMEOUT_S = 30.0           # a connection's next head must be whole this long after it began: else 408
DIRECT_BODY_BYTES = 64 * 1024  # a predict body up to this size may be answered without ASGI
_END_OF_HEAD = b"\r\n\r\n"


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head, one write per answer and predict requests
    answered directly (see the module doc)."""

    _parsed = 0         # bytes of the message's completed head pieces, trailers included
    _pending = 0        # bytes received since a piece last completed, while the message is incomplete
    _in_message = False
    _awaiting_head = True   # the connection is waiting for a head: its first, the next, or one whose message began
    _head_began = 0.0       # loop time the wait began: the connection's start, the last message's end or
                            # answer, or the message's beginning
    _moved = False      # the parser made progress (a message began, a piece completed, body arrived) this chunk
    _dispatched = False  # the current message went to the app (or is answered directly)
    _refused = False    # answered (or about to answer) with a refusal: the rest is ignored
    _refusal: tuple[int, str, str] | None = None   # waiting for an earlier request's answer
    _head_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args, metrics: ServingMetrics, predict: PredictEndpoint, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.predict = predict

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # the parser's flow control keeps the real one. uvicorn annotates the attribute with asyncio.Transport;
        # this stand-in writes, closes, and hands the rest to the transport (its class doc)
        self.transport = _OneWriteAnswers(transport, self.loop)  # type: ignore[assignment]
        self._head_began = self.loop.time()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._check_head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        cycle = self.cycle
        if type(cycle) is _DirectCycle and cycle.receiving:
            cycle.receiving = False
            self.predict.not_received()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message, self._moved, self._dispatched, self._parsed, self._pending = True, True, False, 0, 0
        self._awaiting_head, self._head_began = True, self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        self._moved = True
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4  # ": " and CRLF
        self._moved = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        if self._parsed > MAX_HEAD_BYTES and not self._refused:
            self._refuse_too_large()
        if not self._refused:
            self._dispatched = True
            name = self._direct_predict()
            if name is None:
                super().on_headers_complete()
            else:
                self._answer_directly(name)

    def on_body(self, body: bytes) -> None:
        self._moved = True
        if self._refused:
            return
        cycle = self.cycle
        if type(cycle) is _DirectCycle:
            if cycle.receiving:
                cycle.body.append(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._awaiting_head, self._head_began = True, self.loop.time()  # the next one's
        if self._refused:
            return
        cycle = self.cycle
        if type(cycle) is _DirectCycle:
            if cycle.receiving:
                cycle.receiving = False
                body = cycle.body[0] if len(cycle.body) == 1 else b"".join(cycle.body)
                self.predict.answer(body, cycle.name, cycle.started, partial(self._send_direct, cycle))
        else:
            super().on_message_complete()

    def _direct_predict(self) -> str | None:
        # The model name of a request to answer directly (the plain case of the module doc), else None.
        url, cycle = self.url, self.cycle
        if not url.endswith(b"/predict") or b"?" in url or b"%" in url or b"#" in url \
                or self.expect_100_continue or (cycle is not None and not cycle.response_complete) \
                or self.flow.write_paused:
            return None
        parser = self.parser
        if parser.get_method() != b"POST" or parser.get_http_version() != "1.1" or parser.should_upgrade():
            return None
        length = None
        for header, value in self.headers:
            if header == b"content-length":
                length = value
            elif header == b"transfer-encoding":
                return None
        if length is None or not length.isdigit() or int(length) > DIRECT_BODY_BYTES:
            return None
        name = model_name(url.decode("latin-1"))
        return None if name is None or self.predict.log_behind() else name

    def _answer_directly(self, name: str) -> None:
        # uvicorn annotates the attribute with its own cycle class; this stand-in has what it reads and sets
        cycle = self.cycle = _DirectCycle(name, self.parser.should_keep_alive())  # type: ignore[assignment]
        refusal = self.predict.admit(self.scope, name, cycle.started)
        if refusal is not None:
            self._send_direct(cycle, *refusal)  # before the body, which the parser then reads past
            return
        cycle.receiving = True
        self.predict.receiving()

    def _send_direct(self, cycle: _DirectCycle, status: int, headers: list, body: bytes) -> None:
        # The answer to a request answered without ASGI, as uvicorn would send it, in one write.
        cycle.receiving = False
        cycle.response_started = cycle.response_complete = True
        transport = self.transport
        if not cycle.disconnected and not transport.is_closing():
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += (name, b": ", value, b"\r\n")
            for name, value in headers:
                head += (name, b": ", value, b"\r\n")
            head += (b"content-length: ", str(len(body)).encode(), b"\r\n")
            if not cycle.keep_alive:
                head.append(b"connection: close\r\n")
            head += (b"\r\n", body)
            transport.write(b"".join(head))
            if not cycle.keep_alive:
                transport.close()
        self.on_response_complete()

    def data_received(self, data: bytes) -> None:
        self._moved = False
        super().data_received(data)
        if self._in_message and not self._refused and not self.transport.is_closing():
            self._pending = 0 if self._moved else self._pending + len(data)
            if self._parsed + self._pending > MAX_HEAD_BYTES:
                self._refuse_too_large()

    def on_response_complete(self) -> None:
        if not self._in_message:
            self._head_began = self.loop.time()  # idle from now, the answer out
        super().on_response_complete()
        if self._refusal is not None and not self.pipeline and self.cycle.response_complete:
            self._answer_and_close(*self._refusal)

    def _refuse_too_large(self) -> None:
        self._refuse(431, "Request header fields too large",
                     f"the request line and headers are over {MAX_HEAD_BYTES // 1024} KiB; send less")

    def _check_head(self) -> None:
        # The connection's timer: a head awaited for HEAD_TIMEOUT_S ends the connection; otherwise it
        # looks again when the head now awaited (or the next one) could first be late. A connection
        # waiting for its answer is not idle. (uvicorn's shorter keep-alive timeout usually closes an
        # idle one first, but not one answered before its body was read: the body's arrival cancels it.)
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        left = self._head_began + HEAD_TIMEOUT_S - self.loop.time() if self._awaiting_head else HEAD_TIMEOUT_S
        if left <= 0 and not self._in_message and self.cycle is not None and not self.cycle.response_complete:
            left = HEAD_TIMEOUT_S
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._check_head)
        elif not self._in_message:  # nothing came: there is no one to answer
            self.transport.close()
        else:
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


class _DirectCycle:
    """What uvicorn's protocol sees of a request this protocol answers itself: the attributes of its
    request-response cycle that it reads and sets (``keep_alive`` is cleared by a graceful shutdown)."""

    __slots__ = ("name", "started", "keep_alive", "receiving", "body", "response_started", "response_complete",
                 "disconnected", "message_event")

    def __init__(self, name: str, keep_alive: bool) -> None:
        self.name = name
        self.started = time.perf_counter()
        self.keep_alive = keep_alive
        self.receiving = False   # announced to the endpoint, its body still arriving
        self.body: list[bytes] = []
        self.response_started = self.response_complete = self.disconnected = False
        self.message_event = _NO_ONE_WAITS


class _NoOneWaits:
    """The message event of a direct cycle: no ASGI task waits on it."""

    def set(self) -> None:
        pass


_NO_ONE_WAITS = _NoOneWaits()


class _OneWriteAnswers:
    """A connection's transport that holds a response's head (a write ending in a blank line) until
    the next write, and writes the two at once; a head nothing follows in its turn of the event loop
    goes out alone at the next one. Everything else is the transport's."""

    __slots__ = ("_transport", "_loop", "_head")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif type(data) is bytes and data.endswith(_END_OF_HEAD):
            self._head = data
            self._loop.call_soon(self._release)
        else:
            self._transport.write(data)

    def _release(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self._release()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

"""The HTTP/1.1 protocol the API is served with: uvicorn's httptools protocol, with bounds on a
request's head, each answer sent in one write, and plain predict requests answered without ASGI.

Bounds. The parser would buffer a head without limit (one client could send gigabytes of one
header) and wait for it without end (idle or trickling connections held forever). The parser's
completed pieces (request line, headers, trailers) are counted, and so is what arrives while none
completes; past MAX_HEAD_BYTES the answer is 431 and the connection closes. Every phase a client
controls has a deadline, however it trickles: a head must be whole HEAD_TIMEOUT_S after the connection
opened, its message began or the last message ended or was answered (else 408, or a silent close if
nothing came); a body BODY_TIMEOUT_S after its head (else 408; time the server holds reading back is
not counted); an answer the client does not read (writing held back) is dropped after WRITE_TIMEOUT_S.
A refusal waits for the answers of requests pipelined before it. One timer per connection keeps the
time, re-armed when it fires (or sooner, for a nearer deadline): arming one per request cost the event
loop a heap push and a cancel each time.

Ending a connection. An answer sent before its request's body was whole (a refusal: no key, a key
without the scope, over the rate, a body too large) is the connection's last: the client need not
send the rest, and must not hold the connection by trickling it. Every close comes through ``_end``
(uvicorn's too, through the transport): while the client may still be sending, closing at once would
reset the connection and could take the answer away with it, so the write side is shut after the
answer and what still comes is read and dropped until the client closes, at most LINGER_S. A
connection closing with an answer unsent is dropped after WRITE_TIMEOUT_S.

Files. Each connection holds a descriptor. Past ``max_connections`` (``server.connection_cap``: the
file limit less what the server keeps for its own databases, models and pipes) a new connection is
answered 503 and closed at once, so that the server never runs out: at the limit it could neither
accept connections nor open a promoted version's files.

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
from collections.abc import Callable
from functools import partial

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from appliance.serving.predict import PredictEndpoint, model_name
from appliance.serving.problems import problem_body
from appliance.serving.prometheus import ServingMetrics

MAX_HEAD_BYTES = 64 * 1024  # a request line and headers (or a chunked body's trailers) past this: 431
HEAD_TIMEOUT_S = 30.0  # a connection's next head must be whole this long after it began: else 408
BODY_TIMEOUT_S = 30.0  # a request's body must be whole this long after its head: else 408
WRITE_TIMEOUT_S = 30.0  # writing held back this long (the client not reading), or a close not done: dropped
LINGER_S = 5.0  # after a connection's last answer, what the client still sends is dropped this long
DIRECT_BODY_BYTES = 64 * 1024  # a predict body up to this size may be answered without ASGI
_END_OF_HEAD = b"\r\n\r\n"
_CLOSE = b"\r\nconnection: close\r\n"


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each phase of a connection, one write per answer
    and predict requests answered directly (see the module doc)."""

    _parsed = 0  # bytes of the message's completed head pieces, trailers included
    _pending = 0  # bytes received since a piece last completed, while the message is incomplete
    _in_message = False
    _awaiting_head = True  # the connection is waiting for a head: its first, the next, or one whose message began
    _phase_began = 0.0  # loop time the client's phase began: the wait for a head (the connection's start, the
    # last message's end or answer, or the message's beginning), or for a body (its head's end)
    _moved = False  # the parser made progress (a message began, a piece completed, body arrived) this chunk
    _dispatched = False  # the current message went to the app (or is answered directly)
    _refused = False  # answered (or about to answer) with a refusal, or ending: the rest is ignored
    _refusal: tuple[int, str, str] | None = None  # waiting for an earlier request's answer
    _timer: asyncio.TimerHandle | None = None
    _ending = 0.0  # loop time the connection began to end (closing, or lingering); 0 before
    _lingering = False  # ending with its write side shut, dropping what the client still sends
    _write_held = 0.0  # loop time writing was paused (the client not reading its answers); 0 while it flows
    _lost = False  # the connection is gone: nothing more to time
    _wire: _OneWriteAnswers  # the transport, as this protocol wraps it (``transport`` too, typed as uvicorn's)

    def __init__(
        self, *args, metrics: ServingMetrics, predict: PredictEndpoint, max_connections: int, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.predict = predict
        self.max_connections = max_connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # the parser's flow control keeps the real one. uvicorn annotates the attribute with asyncio.Transport;
        # this stand-in writes, closes (through _end), and hands the rest to the transport (its class doc)
        self.transport = self._wire = _OneWriteAnswers(  # type: ignore[assignment]
            transport, self.loop, self._end, self._last_answer
        )
        self._phase_began = self.loop.time()
        self._timer = self.loop.call_later(HEAD_TIMEOUT_S, self._check_deadlines)
        if len(self.connections) > self.max_connections:
            self._turn_away()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ending, self._lost = self._ending or self.loop.time(), True  # nothing is left to end or time
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        cycle = self.cycle
        if type(cycle) is _DirectCycle and cycle.receiving:
            cycle.receiving = False
            self.predict.not_received()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_held = self.loop.time()
        self._arm(self._write_held + WRITE_TIMEOUT_S)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_held = 0.0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message, self._moved, self._dispatched, self._parsed, self._pending = True, True, False, 0, 0
        self._awaiting_head, self._phase_began = True, self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        self._moved = True
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4  # ": " and CRLF
        self._moved = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head, self._phase_began = False, self.loop.time()  # the body's time begins
        self._arm(self._phase_began + BODY_TIMEOUT_S)
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
        self._awaiting_head, self._phase_began = True, self.loop.time()  # the next one's
        self._arm(self._phase_began + HEAD_TIMEOUT_S)
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
        if (
            not url.endswith(b"/predict")
            or b"?" in url
            or b"%" in url
            or b"#" in url
            or self.expect_100_continue
            or (cycle is not None and not cycle.response_complete)
            or self.flow.write_paused
        ):
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
        if refusal is not None:  # before the body, which is not read: the connection's last answer
            cycle.keep_alive = False
            self._send_direct(cycle, *refusal)
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
        if self._lingering:
            return  # the connection is ending: what the client still sends is dropped
        self._moved = False
        super().data_received(data)
        if self._in_message and not self._refused and not self.transport.is_closing():
            self._pending = 0 if self._moved else self._pending + len(data)
            if self._parsed + self._pending > MAX_HEAD_BYTES:
                self._refuse_too_large()

    def on_response_complete(self) -> None:
        if not self._in_message:
            self._phase_began = self.loop.time()  # idle from now, the answer out
            self._arm(self._phase_began + HEAD_TIMEOUT_S)
        super().on_response_complete()
        if self._refusal is not None and not self.pipeline and self.cycle.response_complete:
            self._answer_and_close(*self._refusal)

    def _refuse_too_large(self) -> None:
        self._refuse(
            431,
            "Request header fields too large",
            f"the request line and headers are over {MAX_HEAD_BYTES // 1024} KiB; send less",
        )

    def _check_deadlines(self) -> None:
        # The connection's timer: past the deadline of the phase under way the connection ends (408 for a
        # head or body begun, a silent close for nothing, dropped for an answer not read or an end not
        # done); otherwise it looks again when that phase (or the next) could first be late. (uvicorn's
        # shorter keep-alive timeout usually closes an idle connection first, but any byte cancels it.)
        self._timer = None
        now = self.loop.time()
        if not self._ending and self.transport.is_closing():
            self._ending = now  # the transport closes by itself (the client ended its side)
        if self._ending:
            due = self._ending + (LINGER_S if self._lingering else WRITE_TIMEOUT_S)
            if now < due:
                self._arm(due)
            else:
                self.transport.abort()
            return
        if self._write_held and now >= self._write_held + WRITE_TIMEOUT_S:
            self.transport.abort()  # the client does not read its answers
            return
        due = self._phase_due(now)
        if self._write_held:
            due = min(due, self._write_held + WRITE_TIMEOUT_S)
        if now < due:
            self._arm(due)
        elif self._awaiting_head and not self._in_message:  # nothing came: there is no one to answer
            self.transport.close()
        else:
            part, limit = ("head", HEAD_TIMEOUT_S) if self._awaiting_head else ("body", BODY_TIMEOUT_S)
            self._refuse(408, "Request timeout", f"the request's {part} was not whole within {limit:g} s")
            if not self._ending:  # the refusal waits for an earlier request's answer
                self._arm(now + HEAD_TIMEOUT_S)

    def _phase_due(self, now: float) -> float:
        # When the phase under way is late: a head awaited, or a body. Waiting for the server (an answer,
        # reading held back) is not the client's time.
        if self._refused:  # a refusal waiting for an earlier request's answer
            return now + HEAD_TIMEOUT_S
        if self._awaiting_head:
            if not self._in_message and self.cycle is not None and not self.cycle.response_complete:
                return now + HEAD_TIMEOUT_S  # waiting for its answer is not idle
            return self._phase_began + HEAD_TIMEOUT_S
        if self.flow.read_paused:  # pipelined behind an answer, or a full buffer the app has not read
            self._phase_began = now
        return self._phase_began + BODY_TIMEOUT_S

    def _arm(self, at: float) -> None:
        # The timer looks at the connection at ``at``, or sooner if it is set to already.
        timer = self._timer
        if timer is not None:
            if timer.when() <= at:
                return
            timer.cancel()
        elif self._lost:
            return
        self._timer = self.loop.call_at(at, self._check_deadlines)

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
            self.transport.write(_problem_answer(status, title, detail))
        self.transport.close()

    def _turn_away(self) -> None:
        # A connection past the cap: a 503 and the end at once (no lingering: the descriptor is wanted back).
        self.metrics.observe_refused_head(503)
        self._ending = self.loop.time()
        self._wire.write(
            _problem_answer(
                503,
                "Service unavailable",
                f"the server holds {self.max_connections} connections, as many as it takes; retry in a moment",
            )
        )
        self._wire.close_now()

    def _last_answer(self) -> bool:
        # Asked as the app's answer head goes out: whether it comes before its request's body is whole, which
        # makes it the connection's last (module doc); uvicorn then closes the connection after it.
        if self._in_message and self._dispatched and not self.pipeline:
            self.cycle.keep_alive = False
            return True
        return False

    def _end(self) -> None:
        # Every close of the connection, uvicorn's included (through the transport). While the client may
        # still be sending (a message under way), the answer goes out, the write side shuts, and what still
        # comes is dropped until the client closes or LINGER_S pass; otherwise it closes, and an answer
        # still unsent after WRITE_TIMEOUT_S is dropped (module doc).
        if self._ending:
            return
        self._ending, self._refused = self.loop.time(), True
        cycle = self.cycle
        if type(cycle) is _DirectCycle and cycle.receiving:
            cycle.receiving = False
            self.predict.not_received()
        if self._in_message:
            self._lingering = True
            self._wire.shut()
            self.flow.resume_reading()
            self._arm(self._ending + LINGER_S)
        else:
            self._wire.close_now()
            self._arm(self._ending + WRITE_TIMEOUT_S)


def _problem_answer(status: int, title: str, detail: str) -> bytes:
    """A problem document that ends its connection, as the protocol writes it itself."""
    body = problem_body(status, title, detail)
    return (
        f"HTTP/1.1 {status} {title}\r\n".encode() + b"content-type: application/problem+json\r\nconnection: close"
        b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class _DirectCycle:
    """What uvicorn's protocol sees of a request this protocol answers itself: the attributes of its
    request-response cycle that it reads and sets (``keep_alive`` is cleared by a graceful shutdown)."""

    __slots__ = (
        "name",
        "started",
        "keep_alive",
        "receiving",
        "body",
        "response_started",
        "response_complete",
        "disconnected",
        "message_event",
    )

    def __init__(self, name: str, keep_alive: bool) -> None:
        self.name = name
        self.started = time.perf_counter()
        self.keep_alive = keep_alive
        self.receiving = False  # announced to the endpoint, its body still arriving
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
    goes out alone at the next one; a head that is its connection's last answer (``last_answer``) says
    so. Closing is the protocol's (``end``: at once, or after lingering); once the write side is shut,
    nothing more is written. Everything else is the transport's."""

    __slots__ = ("_transport", "_loop", "_end", "_last_answer", "_head", "_shut")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        end: Callable[[], None],
        last_answer: Callable[[], bool],
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._end = end
        self._last_answer = last_answer
        self._head: bytes | None = None
        self._shut = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif self._shut:
            return  # after the connection's last answer (uvicorn's 400 for what a lingering client sent, say)
        elif type(data) is bytes and data.endswith(_END_OF_HEAD):
            if data[9:10] != b"1" and self._last_answer() and _CLOSE not in data:  # (not a 100 Continue)
                data = data[:-2] + _CLOSE[2:] + b"\r\n"
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
        self._end()

    def close_now(self) -> None:
        """What is written goes out, then the connection closes."""
        self._release()
        self._transport.close()

    def shut(self) -> None:
        """What is written goes out, then the write side closes; reading goes on."""
        self._release()
        self._shut = True
        self._transport.write_eof()

    def is_closing(self) -> bool:
        return self._shut or self._transport.is_closing()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

"""``POST /v1/models/{name}/predict``: the hot path, a plain ASGI endpoint in front of Litestar.

A prediction passes the gateway (key, scope, rate limit), is routed to production or a
deployment's candidate, completed from the online store and encoded, scored in a micro-batch,
answered with a request id, and logged asynchronously; a shadow candidate scores it after the
answer is on its way.

Litestar's router, middleware, request and response objects cost ~85 µs per request (measured
in process, with an empty handler), more than everything the appliance itself does for one
record; so this one route reads the ASGI scope and messages directly. Every other route is
Litestar's. The route is described in the OpenAPI schema by ``docs.describe``.

The plain request (a small body, sent whole) skips ASGI too: the HTTP protocol hands it from its
parser to ``answer`` (``serving.http_protocol``). Both ways run ``admit`` before the body is read
and ``answer`` once it is in hand, which replies through a callback: at once, or when the request's
micro-batch is scored.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import msgspec

from appliance.data.values import key_text, request_time, time_text
from appliance.errors import ApplianceError, InvalidInput, PayloadTooLarge
from appliance.serving.batching import NotEncoded
from appliance.serving.models import LoadedModel
from appliance.serving.problems import (
    BODY_TOO_LARGE,
    MAX_BODY_BYTES,
    PROBLEM,
    error_response,
    failure_body,
    problem_body,
)
from appliance.serving.request_body import decode_body
from appliance.serving.router import Arm, Route
from appliance.serving.state import ServingState
from storage.errors import StorageError

log = logging.getLogger(__name__)

PREFIX, SUFFIX = "/v1/models/", "/predict"
MAX_SHADOW_IN_FLIGHT = 1_000
LOG_POLL_S = 0.005  # while the prediction log is behind, how often the waiting requests look again
LOG_STALL_S = 0.5  # a writer with no progress this long is stuck: requests stop waiting for it
_JSON, _PROBLEM = b"application/json", PROBLEM.encode()
_UNSCORED = (None, None, None, None)  # a row's logged output columns when it was not scored
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

# An ASGI HTTP scope (Litestar's type through the app, uvicorn's through http_protocol), and the ASGI calls.
AsgiScope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


def model_name(path: str) -> str | None:
    """The model name of a predict path (``/v1/models/{name}/predict``), else None."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


class RequestIds:
    """Unique request ids: a random per-process prefix and a counter (cheaper than a uuid each)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


class PredictEndpoint:
    """Answers predict requests for every model a server serves."""

    def __init__(self, state: ServingState):
        self.state = state
        self.ids = RequestIds()
        self.shadow_tasks: set[asyncio.Task] = set()
        self._log_room: asyncio.Future | None = None  # the one wait for the log that every request shares
        self._stalled_at: int | None = None  # the writer's progress when it was found stuck

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send, name: str) -> None:
        if scope["method"] != "POST":
            status, headers, body = (
                405,
                [(b"content-type", _PROBLEM), (b"allow", b"POST")],
                problem_body(
                    405, "Method not allowed", f"{scope['method']} is not allowed here; POST records to score"
                ),
            )
        else:
            started = time.perf_counter()
            refusal = self.admit(scope, name, started)  # first: a caller without a key costs no body read
            if refusal is None:
                try:
                    raw = await self._receive(scope, receive)
                except _Disconnected:
                    return
                except ApplianceError as e:
                    self._observe_unscored(name, e.status, started)
                    refusal = error_response(e)
            if refusal is not None:
                status, headers, body = refusal
                # Its body is unread. A client waiting for "100 Continue" to send it may send its next
                # request instead, which would be read as this one's body: the connection ends with this
                # answer (RFC 9110, section 10.1.1). Any other client's body is on its way, and uvicorn
                # reads past it; closing now would reset the connection before the answer is read.
                if _expects_continue(scope):
                    headers.append((b"connection", b"close"))
            else:
                answered: asyncio.Future[tuple[int, list, bytes]] = asyncio.get_running_loop().create_future()

                def reply(status: int, headers: list, body: bytes) -> None:
                    if not answered.done():
                        answered.set_result((status, headers, body))

                self.answer(raw, name, started, reply)
                status, headers, body = await answered
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def admit(self, scope: AsgiScope, name: str, started: float) -> tuple[int, list, bytes] | None:
        """None if the caller (the ASGI scope's headers and client) may predict; else the refusal's
        answer, counted."""
        try:
            self.state.admit(scope, "predict")
        except ApplianceError as e:
            self._observe_unscored(name, e.status, started)
            return error_response(e)
        return None

    def log_behind(self) -> bool:
        """Whether a request should wait for the prediction log's writer before it is read (backpressure)."""
        queue = self.state.log
        return queue is not None and queue.depth >= queue.high_water and queue.processed != self._stalled_at

    def receiving(self) -> None:
        """A request's body is on its way in: rows already waiting in a micro-batch may wait for it."""
        self.state.arrivals.count += 1

    def not_received(self) -> None:
        """A body ``receiving`` announced will not come (the client went, or the body was refused)."""
        self.state.arrivals.count -= 1

    def answer(self, raw: bytes, name: str, started: float, reply: Callable[[int, list, bytes], None]) -> None:
        """Score a request whose body (announced by ``receiving``) is in hand, and call ``reply`` with
        its status, headers (no content-length) and body once: at once, or when its micro-batch is scored."""
        try:
            scoring = self._begin(raw, name, started)
        except Exception as e:
            reply(*self._failure(e))
            return
        if scoring.single:  # completed, encoded and scored in a micro-batch
            future = scoring.arm.batcher.score(scoring.records[0])
            if future.done():
                self._scored_in_batch(scoring, reply, future)
            else:
                future.add_done_callback(partial(self._scored_in_batch, scoring, reply))
            return
        try:
            outputs = scoring.arm.model.run(scoring.x).tolist()
        except Exception as e:
            self._unscored(scoring)
            reply(*self._failure(e))
            return
        self._reply(scoring, outputs, reply)

    def _scored_in_batch(self, scoring: _Scoring, reply, future: asyncio.Future) -> None:
        try:
            outputs = [future.result()]
        except NotEncoded as e:  # as if it had failed in _begin
            cause = e.cause
            self._observe_unscored(
                scoring.name, cause.status if isinstance(cause, ApplianceError) else 500, scoring.started
            )
            reply(*self._failure(cause))
            return
        except Exception as e:
            self._unscored(scoring)
            reply(*self._failure(e))
            return
        self._reply(scoring, outputs, reply)

    def _reply(self, scoring: _Scoring, outputs: list, reply) -> None:
        # outputs: each record's model output as a Python value, by task (appliance.task): a probability,
        # a list of class probabilities, or a value
        try:
            answer = self._scored(scoring, outputs)
        except Exception as e:
            answer = self._failure(e)
        reply(*answer)

    async def _receive(self, scope: AsgiScope, receive: Receive) -> bytes:
        if self.log_behind():
            await self._wait_for_log()
        self.receiving()
        try:
            return await _read_body(scope, receive)
        except BaseException:
            self.not_received()
            raise

    def _observe_unscored(self, name: str, status: int, started: float) -> None:
        # A request answered before a model scored it. Only a registered model's name is a label:
        # names a client makes up would grow the metrics without bound.
        state = self.state
        label = name if name in state.routes or state.pool.knows(name) else ""
        state.metrics.observe_request(label, "", "", status, time.perf_counter() - started)

    async def _wait_for_log(self) -> None:
        # Backpressure. The prediction log's writer is behind: the machine's CPU is saturated, and
        # answering more now would only grow the queue (memory) until it overflows (lost rows). Requests
        # wait, sharing one poll, until the writer has drained the queue to half the high-water mark;
        # a writer that makes no progress for LOG_STALL_S is stuck, and then nothing waits for it
        # (the queue's capacity and overflow count take over) until it moves again.
        self.state.metrics.log_waits += 1
        if self._log_room is None:
            self._log_room = asyncio.ensure_future(self._until_log_has_room())
        await asyncio.shield(self._log_room)

    async def _until_log_has_room(self) -> None:
        queue = self.state.log
        assert queue is not None, "waited for only while the log is open (log_behind)"
        seen, still = queue.processed, 0.0
        try:
            while queue.depth > queue.high_water // 2:
                await asyncio.sleep(LOG_POLL_S)
                if queue.processed != seen:
                    seen, still = queue.processed, 0.0
                    continue
                still += LOG_POLL_S
                if still >= LOG_STALL_S:
                    self._stalled_at = seen
                    log.warning(
                        "the prediction log's writer made no progress for %.1f s with %d rows queued; "
                        "answering without waiting for it",
                        LOG_STALL_S,
                        queue.depth,
                    )
                    return
        finally:
            self._log_room = None

    def _begin(self, raw: bytes, name: str, started: float) -> _Scoring:
        # Route, records, request id, arm, and the encoded rows of several records: all that comes
        # before scoring (a single record is encoded with its micro-batch).
        state = self.state
        try:
            route = state.route(name)
            records, single = _records(raw, route, name)
            _check_event_times(records, route, name, single)
            request_id = self.ids.next()
            arm = route.choose(records[0], request_id)
            x = None if single else arm.model.encode(records)
        except Exception as e:
            self._observe_unscored(name, e.status if isinstance(e, ApplianceError) else 500, started)
            raise
        finally:
            self.not_received()  # in hand: no longer on its way
        return _Scoring(name, started, route, arm, request_id, records, single, x)

    def _unscored(self, s: _Scoring) -> None:
        # Encoded, then not scored: counted and logged as a 500.
        seconds = time.perf_counter() - s.started
        self.state.metrics.observe_request(s.name, s.arm.model.version, s.arm.name, 500, seconds)
        self._log_rows(s.route, s.arm, s.request_id, s.records, [_UNSCORED] * len(s.records), seconds, 500)

    def _failure(self, e: Exception) -> tuple[int, list, bytes]:
        # The answer to a failure, called in its except block: the caller's errors as problem documents,
        # anything else a 500 (logged, unless storage said what failed).
        if isinstance(e, ApplianceError):
            return error_response(e)
        if not isinstance(e, StorageError):
            log.exception("unexpected error answering a prediction")
        return 500, [(b"content-type", _PROBLEM)], failure_body(e)

    def _scored(self, s: _Scoring, outputs: list) -> tuple[int, list, bytes]:
        model, name = s.arm.model, s.name
        seconds = time.perf_counter() - s.started
        self.state.metrics.observe_request(name, model.version, s.arm.name, 200, seconds)
        if model.task.kind != "binary":
            return self._scored_task(s, outputs, seconds)
        # A binary model, the common case, answers without building anything per row it does not send.
        probabilities = outputs
        columns = _binary_columns(probabilities, model.threshold)
        self._log_rows(s.route, s.arm, s.request_id, s.records, columns, seconds, 200)
        if (shadow := s.route.shadow) is not None:
            self._start_shadow(shadow, s.route.deployment_id, s.request_id, s.records, s.single)
        # the label as the target holds it: 0/1, or a text target's value (the log keeps its index)
        threshold, labels = model.threshold, model.task.classes
        if s.single:
            p = probabilities[0]
            body = {
                "model": name,
                "version": model.version,
                "request_id": s.request_id,
                "probability": p,
                "label": labels[p >= threshold],
            }
        else:
            body = {
                "model": name,
                "version": model.version,
                "request_id": s.request_id,
                "predictions": [{"probability": p, "label": labels[p >= threshold]} for p in probabilities],
            }
        return 200, [(b"content-type", _JSON), (b"x-request-id", s.request_id.encode())], _encode(body)

    def _scored_task(self, s: _Scoring, outputs: list, seconds: float) -> tuple[int, list, bytes]:
        # A multiclass or regression model's answer: its class and every class's probability, or its value.
        model = s.arm.model
        answers, columns = answered(model, outputs)
        self.state.metrics.observe_outputs(model, columns)
        self._log_rows(s.route, s.arm, s.request_id, s.records, columns, seconds, 200)
        if (shadow := s.route.shadow) is not None:
            self._start_shadow(shadow, s.route.deployment_id, s.request_id, s.records, s.single)
        body = {"model": s.name, "version": model.version, "request_id": s.request_id}
        if s.single:
            answer = answers[0]
            assert answer is not None, "a scored row has an answer"
            body |= answer
        else:
            body["predictions"] = answers
        return 200, [(b"content-type", _JSON), (b"x-request-id", s.request_id.encode())], _encode(body)

    def _log_rows(
        self,
        route: Route,
        arm: Arm,
        request_id: str,
        records: list,
        columns: Iterable[tuple],
        seconds: float,
        status: int,
    ) -> None:
        # ``columns`` are each row's (probability, label, value, probabilities): a multiclass or regression
        # model's as ``answered`` fills them, a binary model's from ``_binary_columns``, every one None unscored.
        now = time.time()
        latency_ms = seconds * 1000
        entity, event_time = route.entity_field, route.event_time_field
        log_rows = self.state.log
        assert log_rows is not None, "the lifespan opens the log before the first request"
        record_row = log_rows.record
        key_type = arm.model.features.key_type if arm.model.features is not None else "string"
        logged = route.logged
        for i, (record, (p, label, value, probabilities)) in enumerate(zip(records, columns)):
            key, at = record.get(entity), record.get(event_time)
            if not record.keys() <= logged:  # a field the spec does not declare is not logged (prediction_log)
                record = self._declared(record, logged)
            if at is not None and type(at) is not str:
                at = time_text(at)  # Unix seconds, kept as ISO text
            record_row(
                (
                    request_id,
                    i,
                    arm.model.name,
                    arm.model.version,
                    arm.name,
                    route.deployment_id,
                    now,
                    at,
                    None if key is None else key_text(key, key_type),
                    record,
                    p,
                    label,
                    latency_ms,
                    status,
                    value,
                    probabilities,
                )
            )

    def _declared(self, record: dict, logged: frozenset[str]) -> dict:
        # The record's fields the spec declares; the others are counted, not logged.
        declared = {field: v for field, v in record.items() if field in logged}
        self.state.metrics.undeclared_fields += len(record) - len(declared)
        return declared

    def _start_shadow(
        self, shadow: Arm, deployment_id: int | None, request_id: str, records: list, single: bool
    ) -> None:
        if len(self.shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            self.state.metrics.shadow_dropped += 1
            return
        task = asyncio.create_task(self._shadow(shadow, deployment_id, request_id, records, single))
        self.shadow_tasks.add(task)
        task.add_done_callback(self.shadow_tasks.discard)

    async def _shadow(self, arm: Arm, deployment_id: int | None, request_id: str, records: list, single: bool) -> None:
        started = time.perf_counter()
        try:
            outputs = (
                [await arm.batcher.score(records[0])] if single else arm.model.run(arm.model.encode(records)).tolist()
            )
        except Exception:  # the shadow's failures are its report's business, never the caller's
            outputs = [None] * len(records)
        latency_ms = (time.perf_counter() - started) * 1000
        _, columns = answered(arm.model, outputs)
        log_rows = self.state.log
        assert log_rows is not None, "the lifespan opens the log before the first request"
        for i, (p, label, value, probabilities) in enumerate(columns):
            log_rows.record_shadow(
                (request_id, i, deployment_id, arm.model.version, p, label, latency_ms, value, probabilities)
            )


def _binary_columns(probabilities: list, threshold: float) -> Iterator[tuple]:
    # A binary model's logged output columns per row, (probability, label, None, None) as ``answered`` makes
    # them, made while the log takes them: the hot path answers a binary model without ``answered``.
    return ((p, None if p is None else int(p >= threshold), None, None) for p in probabilities)


def answered(model: LoadedModel, outputs: list) -> tuple[list[dict | None], list[tuple]]:
    """Each row's answer, and its logged output columns (probability, label, value, probabilities), from the
    model's outputs (Python values, as ``run(...).tolist()`` gives them; None for a row not scored).

    By task, as ``storage.prediction_log`` keeps them: binary: the probability of class 1 and the label (the
    answer says it as the target holds it: 0/1, or a text target's value);
    multiclass: the chosen class's probability, its index, and every class's probability as a JSON list
    (the answer names the class as declared, and each class's probability by its text); regression: the value.
    """
    answers: list[dict | None] = []
    columns: list[tuple] = []
    task = model.task
    if task.kind == "binary":
        threshold = task.threshold
        for p in outputs:
            label = None if p is None else int(p >= threshold)
            answers.append(None if label is None else {"probability": p, "label": task.classes[label]})
            columns.append((p, label, None, None))
    elif task.kind == "multiclass":
        classes, texts = task.classes, model.class_texts
        for row in outputs:
            if row is None:
                answers.append(None)
                columns.append((None, None, None, None))
                continue
            best = max(range(len(row)), key=row.__getitem__)  # the first of tied classes, as numpy's argmax
            answers.append({"class": classes[best], "probabilities": dict(zip(texts, row))})
            columns.append((row[best], best, None, _encode(row).decode()))
    else:
        for value in outputs:
            answers.append(None if value is None else {"value": value})
            columns.append((None, None, value, None))
    return answers, columns


class _Scoring:
    """A request between its arrival in hand and its answer (``x``: the encoded rows of several records)."""

    __slots__ = ("name", "started", "route", "arm", "request_id", "records", "single", "x")

    def __init__(
        self, name: str, started: float, route: Route, arm: Arm, request_id: str, records: list, single: bool, x
    ) -> None:
        self.name, self.started, self.route, self.arm = name, started, route, arm
        self.request_id, self.records, self.single, self.x = request_id, records, single, x


class _Disconnected(Exception):
    """The client went away before its request body arrived: there is no one to answer."""


async def _read_body(scope: AsgiScope, receive: Receive) -> bytes:
    for header, value in scope["headers"]:
        if header == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            raise PayloadTooLarge(BODY_TOO_LARGE)
    message = await receive()
    if message["type"] != "http.request":
        raise _Disconnected
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(BODY_TOO_LARGE)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _expects_continue(scope: AsgiScope) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"])


def _records(raw: bytes, route: Route, name: str) -> tuple[list, bool]:
    """The request's records and whether it sent a single one; bad shapes are InvalidInput."""
    payload = decode_body(raw, _decode, "send one record as an object or several as a list of objects")
    single = type(payload) is dict
    records = [payload] if single else payload
    if type(records) is not list:
        raise InvalidInput("send one record as a JSON object or several as a list of objects")
    if not records:
        raise InvalidInput("the list of records is empty; send at least one record")
    limit = route.production.model.max_batch_rows
    if len(records) > limit:
        raise PayloadTooLarge(
            f"{len(records)} records in one request; the limit for '{name}' is {limit} — split the batch"
        )
    return records, single


def _check_event_times(records: list, route: Route, name: str, single: bool) -> None:
    """Refuse (InvalidInput) a request with a record whose event time is not one, or is outside the event
    times the model takes around the server's clock (``[data]`` of its spec): logged, one such record would
    make monitoring build a window for every day between it and the rest. A record left undated is dated
    now; one that is not an object is left for completion to refuse. A time in the format the contract
    declares is rewritten as ISO 8601 text, the one spelling of times past this door."""
    field, horizon = route.event_time_field, route.horizon
    if field is None or horizon is None:
        return
    bounds: tuple[float, float] | None = None  # read the clock only for a dated record
    for i, record in enumerate(records):
        if type(record) is not dict or (at := record.get(field)) is None:
            continue
        try:
            seconds = request_time(at, field, format=route.time_format) / 1_000_000
        except InvalidInput as e:
            raise InvalidInput(f"{'' if single else f'record {i}: '}{e}") from None
        if route.time_format is not None and type(at) is str:  # ISO text from here on: the features, the log
            record[field] = time_text(seconds)
        if bounds is None:
            bounds = horizon.bounds(time.time())
        earliest, latest = bounds
        if not earliest <= seconds <= latest:
            sent = repr(at[:40]) if type(at) is str else at
            raise InvalidInput(
                f"{'' if single else f'record {i}: '}'{field}' {sent} is outside the event times '{name}' takes "
                f"now, {time_text(round(earliest))} .. {time_text(round(latest))} (the server's clock less [data] "
                f'event_time_past = "{horizon.past}", plus event_time_future = "{horizon.future}"); send the time '
                "the event happened, or widen those settings in the model's spec"
            )

"""The HTTP API: Litestar, JSON in and out, errors as RFC 9457 problem documents.

A prediction passes the gateway (key, scope, rate limit), is routed to production or a
deployment's candidate, encoded per request, scored in a micro-batch, answered with a request
id, and logged asynchronously; a shadow candidate scores it after the answer is on its way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import msgspec
from litestar import Litestar, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath

import appliance
from appliance.errors import ApplianceError, InvalidInput, NotFound, PayloadTooLarge, RateLimited, Unauthorized
from appliance.gateway.access import Caller
from appliance.home import Home
from appliance.serving.admin import admin_routes
from appliance.serving.monitoring_routes import monitoring_routes
from appliance.serving.docs import FeedbackRequest, OfflineDocs, SchemaJson
from appliance.serving.prometheus import CONTENT_TYPE
from appliance.serving.router import Arm, Route
from appliance.serving.state import ServingState
from storage.errors import StorageError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
REFRESH_SECONDS = 0.5
MAX_SHADOW_IN_FLIGHT = 1_000
MAX_FEEDBACK_ITEMS = 10_000
JSON = "application/json"
PROBLEM = "application/problem+json"

_decode = msgspec.json.Decoder().decode
_decode_feedback = msgspec.json.Decoder(FeedbackRequest).decode
_encode = msgspec.json.Encoder().encode


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return Response(content=_encode(body), status_code=status, media_type=PROBLEM, headers=headers)


class RequestIds:
    """Unique request ids: a random per-process prefix and a counter (cheaper than a uuid each)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


def create_app(home_root: Path, refresh_seconds: float = REFRESH_SECONDS, exposed: bool = False) -> Litestar:
    """The API over one data directory. ``exposed``: the server listens beyond loopback, so every
    route needs a key. Keys, deployments and the production alias are re-read every tick."""
    root = Path(home_root).expanduser().resolve()
    state = ServingState(root, exposed)
    ids = RequestIds()
    shadow_tasks: set[asyncio.Task] = set()
    metrics = state.metrics

    @asynccontextmanager
    async def lifespan(app: Litestar):
        home = Home(root)
        state.open()
        await asyncio.to_thread(state.refresh, home)
        watcher = asyncio.create_task(_watch(home))
        try:
            yield
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            if shadow_tasks:
                await asyncio.wait(shadow_tasks, timeout=5)
            await asyncio.to_thread(state.close)  # SIGTERM lands here too: queued predictions get written
            home.close()

    async def _watch(home: Home) -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            try:
                await asyncio.to_thread(state.tick, home)
            except Exception:  # keep watching: a locked or briefly unreadable database must not stop swaps
                log.exception("serving refresh failed; retrying")

    def admit(connection: ASGIConnection, scope: str) -> Caller:
        bearer = key = None
        for header, value in connection.scope["headers"]:  # raw ASGI headers: names are lower-case bytes
            if header == b"authorization":
                bearer = value.decode("latin-1")
            elif header == b"x-api-key":
                key = value.decode("latin-1")
        token = bearer[7:].strip() if bearer and bearer[:7].lower() == "bearer " else key
        client = connection.scope.get("client")  # the socket peer; never a forwarded-for header
        return state.gate.admit(scope, token, client[0] if client else None)

    def guard(scope: str):
        # async: Litestar runs a plain-function guard on a worker thread, a thread hop per request
        async def check(connection: ASGIConnection, _handler: object) -> None:
            connection.state.caller = admit(connection, scope)
        return check

    # The hot path admits its caller itself: a Litestar guard costs a copy of the handler per request.
    @post("/v1/models/{name:str}/predict", status_code=200,
          summary="Score one record (an object) or several (a list); the answer carries a request_id for feedback")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]  # read here, not injected: Litestar's parameter model costs more
        state.arrivals.count += 1
        try:
            admit(request, "predict")
            route = state.route(name)
            records, single = _records(await request.body(), route, name)
            request_id = ids.next()
            arm = route.choose(records[0], request_id)
            x = arm.model.encode(records)
        except ApplianceError as e:
            # an unknown name is not a label: a client must not grow the metrics without bound
            metrics.observe_request("" if isinstance(e, NotFound) else name, "", "", e.status,
                                    time.perf_counter() - started)
            raise
        finally:
            state.arrivals.count -= 1
        model = arm.model
        try:
            probabilities = [await arm.batcher.score(x)] if single else model.run(x).tolist()
        except Exception:
            seconds = time.perf_counter() - started
            metrics.observe_request(name, model.version, arm.name, 500, seconds)
            _log_rows(route, arm, request_id, records, [None] * len(records), seconds, 500)
            raise
        seconds = time.perf_counter() - started
        metrics.observe_request(name, model.version, arm.name, 200, seconds)
        _log_rows(route, arm, request_id, records, probabilities, seconds, 200)
        if route.shadow is not None:
            _start_shadow(route, request_id, records, single)
        threshold = model.threshold
        if single:
            p = probabilities[0]
            body = {"model": name, "version": model.version, "request_id": request_id, "probability": p,
                    "label": int(p >= threshold)}
        else:
            body = {"model": name, "version": model.version, "request_id": request_id,
                    "predictions": [{"probability": p, "label": int(p >= threshold)} for p in probabilities]}
        return Response(content=_encode(body), media_type=JSON, headers={"x-request-id": request_id})

    def _log_rows(route: Route, arm: Arm, request_id: str, records: list, probabilities: list, seconds: float,
                  status: int) -> None:
        now = time.time()
        latency_ms = seconds * 1000
        threshold = arm.model.threshold
        entity, event_time = route.entity_field, route.event_time_field
        for i, (record, p) in enumerate(zip(records, probabilities)):
            key, at = record.get(entity), record.get(event_time)
            state.log.record((request_id, i, arm.model.name, arm.model.version, arm.name, route.deployment_id, now,
                              None if at is None else str(at), None if key is None else str(key), record,
                              p, None if p is None else int(p >= threshold), latency_ms, status))

    def _start_shadow(route: Route, request_id: str, records: list, single: bool) -> None:
        if len(shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            metrics.shadow_dropped += 1
            return
        task = asyncio.create_task(_shadow(route.shadow, route.deployment_id, request_id, records, single))
        shadow_tasks.add(task)
        task.add_done_callback(shadow_tasks.discard)

    async def _shadow(arm: Arm, deployment_id: int, request_id: str, records: list, single: bool) -> None:
        started = time.perf_counter()
        try:
            x = arm.model.encode(records)
            probabilities = [await arm.batcher.score(x)] if single else arm.model.run(x).tolist()
        except Exception:  # the shadow's failures are its report's business, never the caller's
            probabilities = [None] * len(records)
        latency_ms = (time.perf_counter() - started) * 1000
        threshold = arm.model.threshold
        for i, p in enumerate(probabilities):
            state.log.record_shadow((request_id, i, deployment_id, arm.model.version, p,
                                     None if p is None else int(p >= threshold), latency_ms))

    @post("/v1/models/{name:str}/feedback", status_code=200, guards=[guard("feedback")],
          summary="Attach outcomes (labels) to earlier predictions by request_id; unknown ids are listed back")
    async def feedback(name: FromPath[str], request: Request) -> Response:
        if name not in state.pool.known():
            state.pool.get(name)
        try:
            body = _decode_feedback(await request.body())
        except msgspec.ValidationError as e:
            raise InvalidInput(f"feedback: {e}; send {{\"outcomes\": [{{\"request_id\": \"…\", \"outcome\": 1}}]}}") from None
        except msgspec.DecodeError as e:
            raise InvalidInput(f"request body is not valid JSON ({e})") from None
        if not body.outcomes:
            raise InvalidInput("the list of outcomes is empty; send at least one")
        if len(body.outcomes) > MAX_FEEDBACK_ITEMS:
            raise PayloadTooLarge(f"{len(body.outcomes)} outcomes in one request; the limit is "
                                  f"{MAX_FEEDBACK_ITEMS} — split them")
        await asyncio.to_thread(state.log.flush)  # a prediction answered a moment ago is written first
        items = [(o.request_id, o.position, o.outcome) for o in body.outcomes]
        unknown = await asyncio.to_thread(state.with_store, lambda store: store.attach_feedback(name, items))
        answer = {"accepted": len(items) - len(unknown),
                  "unknown": [{"request_id": r, "position": p} for r, p in unknown]}
        return Response(content=_encode(answer), media_type=JSON)

    @get("/v1/models", guards=[guard("read")], summary="Served models, their production version and deployment")
    async def list_models() -> Response:
        routes = state.routes
        body = []
        for name in sorted(state.pool.known()):
            route = routes.get(name)
            d = route.deployment if route else None
            body.append({"name": name, "serving_version": route.production.model.version if route else None,
                         "deployment": None if d is None else {"strategy": d.strategy, "candidate": d.candidate_version,
                                                               "traffic_percent": d.traffic_percent}})
        return Response(content=_encode(body), media_type=JSON)

    @get("/metrics", guards=[guard("read")], summary="Prometheus text exposition")
    async def prometheus() -> Response:
        return Response(content=metrics.render(state.gauges()), media_type=CONTENT_TYPE)

    @get("/healthz", summary="Liveness (open to probes, no key needed)")
    async def healthz() -> Response:
        return Response(content=_encode({"status": "ok"}), media_type=JSON)

    @get("/readyz", summary="Readiness: 200 once every model with a production version is loaded (no key needed)")
    async def readyz() -> Response:
        loaded = state.pool.loaded()
        waiting = sorted(state.pool.known() - loaded.keys())
        body = {"ready": not waiting, "serving": {n: m.version for n, m in loaded.items()},
                "not_serving": waiting}
        return Response(content=_encode(body), media_type=JSON, status_code=200 if not waiting else 503)

    def on_appliance_error(_: Request, exc: ApplianceError) -> Response:
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"retry-after": str(exc.retry_after)}
        elif isinstance(exc, Unauthorized):
            headers = {"www-authenticate": 'Bearer realm="appliance"'}
        return problem(exc.status, exc.title, str(exc), headers)

    def on_storage_error(_: Request, exc: StorageError) -> Response:
        return problem(500, "Storage error", str(exc))

    def on_http_error(_: Request, exc: HTTPException) -> Response:
        detail = exc.detail
        if exc.status_code == 413:
            detail = f"request body over {MAX_BODY_BYTES // (1024 * 1024)} MiB; split the batch"
        return problem(exc.status_code, type(exc).__name__, detail)

    def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return problem(500, "Internal error", "the appliance hit an unexpected error; see its log")

    openapi = OpenAPIConfig(
        title="MLOps appliance", version=appliance.__version__, path="/schema",
        render_plugins=[OfflineDocs(), SchemaJson()],
        openapi_router=Router("/schema", route_handlers=[], include_in_schema=False, guards=[guard("read")]))
    admin = admin_routes(state, root, guard("admin"))
    monitoring = monitoring_routes(root, guard("read"))
    return Litestar(
        route_handlers=[predict, feedback, list_models, prometheus, healthz, readyz, *admin, *monitoring],
        lifespan=[lifespan],
        exception_handlers={ApplianceError: on_appliance_error, StorageError: on_storage_error,
                            HTTPException: on_http_error, Exception: on_unexpected},
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=openapi,
        logging_config=None,  # the process configures logging once, in the CLI
        debug=False,
    )


def _records(raw: bytes, route: Route, name: str) -> tuple[list, bool]:
    """The request's records and whether it sent a single one; bad shapes are InvalidInput."""
    try:
        payload = _decode(raw)
    except msgspec.DecodeError as e:
        raise InvalidInput(f"request body is not valid JSON ({e}); send one record as an object "
                           "or several as a list of objects") from None
    single = type(payload) is dict
    records = [payload] if single else payload
    if type(records) is not list:
        raise InvalidInput("send one record as a JSON object or several as a list of objects")
    if not records:
        raise InvalidInput("the list of records is empty; send at least one record")
    limit = route.production.model.max_batch_rows
    if len(records) > limit:
        raise PayloadTooLarge(f"{len(records)} records in one request; the limit for '{name}' is "
                              f"{limit} — split the batch")
    return records, single


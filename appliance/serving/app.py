"""The HTTP API: Litestar, JSON in and out, errors as RFC 9457 problem documents.

Predictions take a lean path of their own (``predict``, in front of Litestar); every other route
— feedback, models, metrics, health, admin, monitoring, the schema — is a Litestar handler that takes
and answers typed structures (``bodies``), from which Litestar generates the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus
from pathlib import Path

from litestar import Litestar, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.types import Guard, Receive, Scope, Send

import appliance
from appliance.data.declared import model_contract, model_task
from appliance.errors import ApplianceError, InvalidInput, PayloadTooLarge
from appliance.home import Home
from appliance.serving import problems
from appliance.serving.admin import admin_routes
from appliance.serving.bodies import (
    DeploymentShown,
    FeedbackAnswer,
    FeedbackRequest,
    Health,
    Readiness,
    ServedModel,
    UnknownOutcome,
)
from appliance.serving.docs import OfflineDocs, SchemaJson, problem_responses
from appliance.serving.feedback import TargetRange, expected, record_outcomes, stored_outcomes, target_range
from appliance.serving.monitoring_routes import monitoring_routes
from appliance.serving.predict import PredictEndpoint, model_name
from appliance.serving.prometheus import CONTENT_TYPE
from appliance.serving.report_route import report_routes
from appliance.serving.request_body import TypedRequest, body_hint, validation_detail
from appliance.serving.state import ServingState
from appliance.task import Task
from storage.errors import StorageError

log = logging.getLogger(__name__)

REFRESH_SECONDS = 0.5
MAX_FEEDBACK_ITEMS = 10_000


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem document."""
    return Response(
        content=problems.problem_body(status, title, detail),
        status_code=status,
        media_type=problems.PROBLEM,
        headers=headers,
    )


class ServingApp:
    """The API as one ASGI app: predict requests go to the endpoint, everything else to Litestar."""

    def __init__(self, litestar: Litestar, predict: PredictEndpoint):
        self.litestar = litestar
        self.predict = predict
        self.metrics = predict.state.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = model_name(scope["path"])
            if name is not None:
                return await self.predict(scope, receive, send, name)
        await self.litestar(scope, receive, send)


def create_app(home_root: Path, refresh_seconds: float = REFRESH_SECONDS, exposed: bool = False) -> ServingApp:
    """The API over one data directory. ``exposed``: the server listens beyond loopback, so every
    route needs a key. Keys, deployments and the production alias are re-read every tick."""
    root = Path(home_root).expanduser().resolve()
    state = ServingState(root, exposed)
    endpoint = PredictEndpoint(state)
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
            if endpoint.shadow_tasks:
                await asyncio.wait(endpoint.shadow_tasks, timeout=5)
            await asyncio.to_thread(state.close)  # SIGTERM lands here too: queued predictions get written
            home.close()

    async def _watch(home: Home) -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            try:
                await asyncio.to_thread(state.tick, home)
            except Exception:  # keep watching: a locked or briefly unreadable database must not stop swaps
                log.exception("serving refresh failed; retrying")

    def _spec_task(name: str) -> tuple[Task, TargetRange]:
        # A model with nothing loaded (its version failed to load) still takes outcomes for what it answered.
        with Home(root) as home:
            spec = home.spec(name)
            contract = model_contract(spec)
            return model_task(spec, contract), target_range(spec, contract)

    def guard(scope: str) -> Guard:
        # async: Litestar runs a plain-function guard on a worker thread, a thread hop per request
        async def check(connection: ASGIConnection, _handler: object) -> None:
            connection.state.caller = state.admit(connection.scope, scope)

        return check

    read_guard, admin_guard = guard("read"), guard("admin")

    async def feedback_model(request: Request) -> None:
        # Before the body is read: an unknown model is a 404 whatever was sent, and a body that cannot be read
        # is told what its model takes as an outcome (request_body.TypedRequest reads the hint).
        name = request.path_params["name"]
        if not state.pool.knows(name):
            state.pool.get(name)
        route = state.routes.get(name)
        task, target = (
            (route.production.model.task, route.target) if route else await asyncio.to_thread(_spec_task, name)
        )
        request.state.task, request.state.target = task, target
        request.state.body_hint = (
            f'send {{"outcomes": [{{"request_id": "…", "outcome": …}}]}}; for {task.kind} '
            f"model '{name}', each outcome: {expected(task)}"
        )

    @post(
        "/v1/models/{name:str}/feedback",
        status_code=200,
        guards=[guard("feedback")],
        before_request=feedback_model,
        summary="Attach outcomes (labels) to earlier predictions by request_id; unknown ids are listed back",
    )
    async def feedback(name: FromPath[str], data: JSONBody[FeedbackRequest], request: Request) -> FeedbackAnswer:
        task: Task = request.state.task
        if not data.outcomes:
            raise InvalidInput("the list of outcomes is empty; send at least one")
        if len(data.outcomes) > MAX_FEEDBACK_ITEMS:
            raise PayloadTooLarge(
                f"{len(data.outcomes)} outcomes in one request; the limit is {MAX_FEEDBACK_ITEMS} — split them"
            )
        items = stored_outcomes(task, name, data.outcomes, request.state.target)
        await asyncio.to_thread(state.flush_log)  # a prediction answered a moment ago is written first
        unknown = await asyncio.to_thread(
            state.with_store, lambda store: record_outcomes(store, task, name, items, data.replace)
        )
        return FeedbackAnswer(
            accepted=len(items) - len(unknown), unknown=[UnknownOutcome(request_id=r, position=p) for r, p in unknown]
        )

    @get("/v1/models", guards=[read_guard], summary="Served models, their production version and deployment")
    async def list_models() -> list[ServedModel]:
        routes = state.routes
        served = []
        for name in sorted(state.pool.known()):
            route = routes.get(name)
            d = route.deployment if route else None
            served.append(
                ServedModel(
                    name=name,
                    serving_version=route.production.model.version if route else None,
                    provider=route.production.model.provider if route else None,
                    deployment=None
                    if d is None
                    else DeploymentShown(
                        strategy=d.strategy, candidate=d.candidate_version, traffic_percent=d.traffic_percent
                    ),
                )
            )
        return served

    @get("/metrics", guards=[read_guard], media_type=CONTENT_TYPE, summary="Prometheus text exposition")
    async def prometheus() -> str:
        return metrics.render(state.gauges())

    @get("/healthz", summary="Liveness (open to probes, no key needed)")
    async def healthz() -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        summary="Readiness: 200 once every model with a production version is loaded (no key needed)",
        responses={503: ResponseSpec(data_container=Readiness, description="a model is not loaded yet")},
    )
    async def readyz() -> Response[Readiness]:
        loaded = state.pool.loaded()
        waiting = sorted(state.pool.known() - loaded.keys())
        body = Readiness(ready=not waiting, serving={n: m.version for n, m in loaded.items()}, not_serving=waiting)
        return Response(content=body, status_code=200 if not waiting else 503)

    def on_appliance_error(_: Request, exc: ApplianceError) -> Response:
        status, headers, body = problems.error_response(exc)
        return Response(
            content=body,
            status_code=status,
            media_type=problems.PROBLEM,
            headers={k.decode(): v.decode() for k, v in headers if k != b"content-type"},
        )

    def on_storage_error(_: Request, exc: StorageError) -> Response:
        return Response(content=problems.failure_body(exc), status_code=500, media_type=problems.PROBLEM)

    def on_http_error(request: Request, exc: HTTPException) -> Response:
        # Titles as the appliance's own errors word them, whichever part refused the request
        if exc.status_code == 413:  # Litestar's body limit: said as the predict route says it
            return problem(413, PayloadTooLarge.title, problems.BODY_TOO_LARGE)
        if isinstance(exc, ValidationException):  # its 400, as a body decode_body refuses: 422 saying why
            return problem(InvalidInput.status, InvalidInput.title, validation_detail(exc, body_hint(request)))
        # its headers too: a 405's Allow names the methods the path takes
        return problem(exc.status_code, HTTPStatus(exc.status_code).phrase.capitalize(), exc.detail, exc.headers)

    def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return Response(content=problems.failure_body(exc), status_code=500, media_type=problems.PROBLEM)

    def served() -> dict[str, Task]:
        return {name: route.production.model.task for name, route in state.routes.items()}

    openapi = OpenAPIConfig(
        title="MLOps appliance",
        version=appliance.__version__,
        path="/schema",
        render_plugins=[OfflineDocs(served), SchemaJson(served)],
        openapi_router=Router("/schema", route_handlers=[], include_in_schema=False, guards=[read_guard]),
    )
    admin = admin_routes(state, root, admin_guard)
    monitoring = [*monitoring_routes(root, read_guard), *report_routes(root, read_guard)]
    handlers = [feedback, list_models, prometheus, healthz, readyz, *admin, *monitoring]
    for handler in handlers:  # a route's own (readyz's 503, a 422 for a query value refused) stay
        documented = problem_responses(_problems(handler, read_guard, admin_guard))
        handler.responses = {**documented, **(handler.responses or {})}
    return ServingApp(
        Litestar(
            route_handlers=handlers,
            lifespan=[lifespan],
            exception_handlers={
                ApplianceError: on_appliance_error,
                StorageError: on_storage_error,
                HTTPException: on_http_error,
                Exception: on_unexpected,
            },
            request_class=TypedRequest,  # bodies read strictly, refused as the predict route refuses them
            request_max_body_size=problems.MAX_BODY_BYTES,
            openapi_config=openapi,
            logging_config=None,  # the process configures logging once, in the CLI
            debug=False,
        ),
        endpoint,
    )


def _problems(handler: HTTPRouteHandler, read: Guard, admin: Guard) -> set[int]:
    """The problem statuses a route can answer (documented in its OpenAPI responses), from what it is: a guarded
    one 401 and 429, and 403 unless any key may read it; one naming a model, run or alert 404; an admin action
    409; one taking a body 413 and 422."""
    guards = handler.guards or []
    statuses: set[int] = set()
    if guards:
        statuses |= {401, 429} if read in guards else {401, 403, 429}
    named = {name for path in handler.paths for name in re.findall(r"\{(\w+):", path)}
    if named:
        statuses.add(404)
    if "data" in inspect.signature(handler.fn).parameters:
        statuses |= {413, 422}
    if admin in guards and "POST" in handler.http_methods:
        statuses.add(409)
    return statuses

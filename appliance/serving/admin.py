"""Admin routes: promote, roll back, run deployments, retrain, alerts. Every one needs an admin key, even
on loopback.

Each acts through the same functions as the CLI (Registry.promote/rollback, deployment start,
advance, abort) on its own connection, then refreshes the server's routes at once, and answers what that
function returns. Bodies and answers are typed (``serving.bodies``), so the OpenAPI schema describes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import Guard

from appliance.alerts import records as alert_records
from appliance.alerts.records import Alert
from appliance.deployment import deployments
from appliance.deployment.deployments import Deployment
from appliance.errors import NotFound
from appliance.home import Home
from appliance.registry.registry import ModelVersion, RolledBack
from appliance.serving.bodies import (
    AdvanceRequest,
    DeploymentReport,
    DeploymentRequest,
    PromoteRequest,
    ReasonRequest,
    RetrainStarted,
    RunStarting,
)
from appliance.serving.state import ServingState
from appliance.training.retrain import start_retrain
from appliance.training.retrain import starting as retrain_starting
from appliance.training.runs import PipelineRun, pipeline_run

T = TypeVar("T")


def admin_routes(state: ServingState, root: Path, admin_guard: Guard) -> list[HTTPRouteHandler]:
    """The admin route handlers over one data directory."""

    def admin_post(path: str, summary: str, status_code: int = 200) -> post:
        # Every admin route needs the admin key, and its summary says so: declared here once, so no route
        # can leave the guard out.
        return post(path, status_code=status_code, guards=[admin_guard], summary=f"{summary} (admin)")

    def admin_get(path: str, summary: str) -> get:
        return get(path, guards=[admin_guard], summary=f"{summary} (admin)")

    async def act(request: Request[Any, Any, Any], action: Callable[[Home, str], T]) -> T:
        caller = request.state.caller
        actor = f"api:{caller.key_id}"

        def run() -> T:
            with Home(root) as home:
                result = action(home, actor)
                state.refresh(home)
                return result

        return await asyncio.to_thread(run)

    @admin_post("/v1/models/{name:str}/promote", "Point production at a version")
    async def promote(
        name: FromPath[str], data: JSONBody[PromoteRequest], request: Request[Any, Any, Any]
    ) -> ModelVersion:
        return await act(
            request, lambda home, actor: home.registry.promote(name, data.version, actor=actor, reason=data.reason)
        )

    @admin_post("/v1/models/{name:str}/rollback", "Return production to the previous version")
    async def rollback(
        name: FromPath[str], request: Request[Any, Any, Any], data: JSONBody[ReasonRequest | None] = None
    ) -> RolledBack:
        reason = _reason(data)
        return await act(request, lambda home, actor: home.registry.rollback(name, actor=actor, reason=reason))

    @admin_post(
        "/v1/models/{name:str}/deployments",
        "Start a blue-green, canary, shadow or A/B deployment of a version",
        status_code=201,
    )
    async def start(
        name: FromPath[str], data: JSONBody[DeploymentRequest], request: Request[Any, Any, Any]
    ) -> Deployment:
        return await act(
            request,
            lambda home, actor: deployments.start(
                home, name, data.strategy, data.version, actor=actor, percent=data.percent, split_key=data.split_key
            ),
        )

    @admin_post("/v1/models/{name:str}/deployments/advance", "Move the running deployment one step on")
    async def advance(
        name: FromPath[str], request: Request[Any, Any, Any], data: JSONBody[AdvanceRequest | None] = None
    ) -> Deployment:
        body = data or AdvanceRequest()
        return await act(
            request,
            lambda home, actor: deployments.advance(home, name, actor=actor, reason=body.reason, force=body.force),
        )

    @admin_post(
        "/v1/models/{name:str}/deployments/abort", "Stop the running deployment; all traffic back to the baseline"
    )
    async def abort(
        name: FromPath[str], request: Request[Any, Any, Any], data: JSONBody[ReasonRequest | None] = None
    ) -> Deployment:
        reason = _reason(data)
        return await act(request, lambda home, actor: deployments.abort(home, name, actor=actor, reason=reason))

    @admin_get("/v1/models/{name:str}/deployments", "The running (or latest) deployment and what it has shown so far")
    async def status(name: FromPath[str]) -> DeploymentReport:
        def run() -> DeploymentReport:
            with Home(root) as home:
                d = deployments.latest(home, name)
                if d is None:
                    raise NotFound(f"model '{name}' has never been deployed with a strategy")
                state.flush_log()
                report = state.with_store(lambda store: deployments.report(home, store, d))
            return msgspec.convert(report, DeploymentReport)

        return await asyncio.to_thread(run)

    @admin_post(
        "/v1/models/{name:str}/retrain",
        "Start a retrain in a worker process: 202 with its run id; 409 if the model is training",
        status_code=202,
    )
    async def retrain(
        name: FromPath[str], request: Request[Any, Any, Any], data: JSONBody[ReasonRequest | None] = None
    ) -> RetrainStarted:
        reason = _reason(data)
        actor = f"api:{request.state.caller.key_id}"

        def run() -> RetrainStarted:
            with Home(root) as home:
                home.spec(name)  # an unknown model or a broken spec is answered now, not in the worker
            run_id = start_retrain(root, name, actor, reason)
            return RetrainStarted(model=name, run_id=run_id, status="started", watch=f"/v1/models/{name}/runs/{run_id}")

        return await asyncio.to_thread(run)

    @admin_get(
        "/v1/models/{name:str}/runs/{run_id:str}",
        "A training run: status (starting, running, succeeded, failed, skipped), stages, metrics, error, outcome",
    )
    async def run_status(name: FromPath[str], run_id: FromPath[str]) -> PipelineRun | RunStarting:
        def run() -> PipelineRun | RunStarting:
            with Home(root) as home:
                try:
                    found = pipeline_run(home.conn, run_id)
                except NotFound:
                    if retrain_starting(name, run_id):  # its worker is starting up
                        return RunStarting(id=run_id, model=name, status="starting")
                    raise
                if found.model != name:
                    raise NotFound(f"run {run_id} is not a run of model '{name}'")
                return found

        return await asyncio.to_thread(run)

    @admin_get("/v1/alerts", "Alerts, newest first: ?model=M, ?all=true for resolved ones")
    async def alerts(
        model: FromQuery[str | None] = None,
        everything: Annotated[
            str, QueryParameter(name="all", description="true (or 1, yes): resolved alerts too")
        ] = "false",
    ) -> list[Alert]:
        resolved_too = everything.lower() in ("1", "true", "yes")

        def run() -> list[Alert]:
            with Home(root) as home:
                return alert_records.list_alerts(home.conn, model, include_resolved=resolved_too)

        return await asyncio.to_thread(run)

    @admin_post("/v1/alerts/{alert_id:int}/ack", "Acknowledge an alert: someone is on it")
    async def ack(alert_id: FromPath[int], request: Request[Any, Any, Any]) -> Alert:
        return await act(request, lambda home, actor: alert_records.acknowledge(home.conn, alert_id, actor))

    @admin_post("/v1/alerts/{alert_id:int}/resolve", "Resolve an alert; if its rule fires again a new one opens")
    async def resolve(alert_id: FromPath[int], request: Request[Any, Any, Any]) -> Alert:
        return await act(request, lambda home, actor: alert_records.resolve(home.conn, alert_id, actor))

    return [promote, rollback, start, advance, abort, status, retrain, run_status, alerts, ack, resolve]


def _reason(body: ReasonRequest | None) -> str:
    # The body is optional: none at all reads as {}.
    return body.reason if body is not None else ""

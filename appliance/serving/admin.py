"""Admin routes: promote, roll back, run deployments, retrain, alerts. Every one needs an admin key, even
on loopback.

Each acts through the same functions as the CLI (Registry.promote/rollback, deployment start,
advance, abort) on its own connection, then refreshes the server's routes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath

from appliance.alerts import records as alert_records
from appliance.deployment import deployments
from appliance.errors import NotFound
from appliance.home import Home
from appliance.serving.docs import DeploymentRequest, PromoteRequest, ReasonRequest
from appliance.serving.request_body import decode_body
from appliance.serving.state import ServingState
from appliance.training.retrain import start_retrain
from appliance.training.retrain import starting as retrain_starting
from appliance.training.runs import PipelineRun, pipeline_run

_encode = msgspec.json.Encoder().encode


def admin_routes(state: ServingState, root: Path, admin_guard: Callable) -> list:
    """The admin route handlers over one data directory."""

    async def act(request: Request, action: Callable[[Home, str], Any]) -> Response:
        caller = request.state.caller
        actor = f"api:{caller.key_id}"

        def run() -> Any:
            with Home(root) as home:
                result = action(home, actor)
                state.refresh(home)
                return result

        return Response(content=_encode(await asyncio.to_thread(run)), media_type="application/json")

    @post("/v1/models/{name:str}/promote", status_code=200, guards=[admin_guard],
          summary="Point production at a version (admin)")
    async def promote(name: FromPath[str], request: Request) -> Response:
        body = await _body(request, PromoteRequest)
        return await act(request, lambda home, actor: home.registry.promote(name, body.version, actor=actor,
                                                                           reason=body.reason))

    @post("/v1/models/{name:str}/rollback", status_code=200, guards=[admin_guard],
          summary="Return production to the previous version (admin)")
    async def rollback(name: FromPath[str], request: Request) -> Response:
        body = await _body(request, ReasonRequest)
        return await act(request, lambda home, actor: home.registry.rollback(name, actor=actor, reason=body.reason))

    @post("/v1/models/{name:str}/deployments", status_code=201, guards=[admin_guard],
          summary="Start a blue-green, canary, shadow or A/B deployment of a version (admin)")
    async def start(name: FromPath[str], request: Request) -> Response:
        body = await _body(request, DeploymentRequest)
        return await act(request, lambda home, actor: deployments.start(
            home, name, body.strategy, body.version, actor=actor, percent=body.percent, split_key=body.split_key))

    @post("/v1/models/{name:str}/deployments/advance", status_code=200, guards=[admin_guard],
          summary="Move the running deployment one step on (admin)")
    async def advance(name: FromPath[str], request: Request) -> Response:
        body = await _body(request, ReasonRequest)
        return await act(request, lambda home, actor: deployments.advance(home, name, actor=actor, reason=body.reason))

    @post("/v1/models/{name:str}/deployments/abort", status_code=200, guards=[admin_guard],
          summary="Stop the running deployment; all traffic back to the baseline (admin)")
    async def abort(name: FromPath[str], request: Request) -> Response:
        body = await _body(request, ReasonRequest)
        return await act(request, lambda home, actor: deployments.abort(home, name, actor=actor, reason=body.reason))

    @get("/v1/models/{name:str}/deployments", guards=[admin_guard],
         summary="The running (or latest) deployment and what it has shown so far (admin)")
    async def status(name: FromPath[str], request: Request) -> Response:
        def run() -> dict:
            with Home(root) as home:
                d = deployments.latest(home, name)
                if d is None:
                    raise NotFound(f"model '{name}' has never been deployed with a strategy")
                state.log.flush()
                return state.with_store(lambda store: deployments.report(home, store, d))

        return Response(content=_encode(await asyncio.to_thread(run)), media_type="application/json")

    @post("/v1/models/{name:str}/retrain", status_code=202, guards=[admin_guard],
          summary="Start a retrain in a worker process: 202 with its run id; 409 if the model is training (admin)")
    async def retrain(name: FromPath[str], request: Request) -> Response:
        body = await _body(request, ReasonRequest)
        actor = f"api:{request.state.caller.key_id}"

        def run() -> dict:
            with Home(root) as home:
                home.spec(name)  # an unknown model or a broken spec is answered now, not in the worker
            run_id = start_retrain(root, name, actor, body.reason)
            return {"model": name, "run_id": run_id, "status": "started",
                    "watch": f"/v1/models/{name}/runs/{run_id}"}

        return Response(content=_encode(await asyncio.to_thread(run)), status_code=202,
                        media_type="application/json")

    @get("/v1/models/{name:str}/runs/{run_id:str}", guards=[admin_guard],
         summary="A training run: status (starting, running, succeeded, failed), stages, metrics, error (admin)")
    async def run_status(name: FromPath[str], run_id: FromPath[str]) -> Response:
        def run() -> PipelineRun | dict:
            with Home(root) as home:
                try:
                    found = pipeline_run(home.conn, run_id)
                except NotFound:
                    if retrain_starting(name, run_id):  # its worker is starting up
                        return {"id": run_id, "model": name, "status": "starting"}
                    raise
                if found.model != name:
                    raise NotFound(f"run {run_id} is not a run of model '{name}'")
                return found

        return Response(content=_encode(await asyncio.to_thread(run)), media_type="application/json")

    @get("/v1/alerts", guards=[admin_guard],
         summary="Alerts, newest first: ?model=M, ?all=true for resolved ones (admin)")
    async def alerts(request: Request) -> Response:
        model = request.query_params.get("model")
        everything = request.query_params.get("all", "false").lower() in ("1", "true", "yes")

        def run() -> list:
            with Home(root) as home:
                return alert_records.list_alerts(home.conn, model, include_resolved=everything)

        return Response(content=_encode(await asyncio.to_thread(run)), media_type="application/json")

    @post("/v1/alerts/{alert_id:int}/ack", status_code=200, guards=[admin_guard],
          summary="Acknowledge an alert: someone is on it (admin)")
    async def ack(alert_id: FromPath[int], request: Request) -> Response:
        return await act(request, lambda home, actor: alert_records.acknowledge(home.conn, alert_id, actor))

    @post("/v1/alerts/{alert_id:int}/resolve", status_code=200, guards=[admin_guard],
          summary="Resolve an alert; if its rule fires again a new one opens (admin)")
    async def resolve(alert_id: FromPath[int], request: Request) -> Response:
        return await act(request, lambda home, actor: alert_records.resolve(home.conn, alert_id, actor))

    return [promote, rollback, start, advance, abort, status, retrain, run_status, alerts, ack, resolve]


async def _body(request: Request, struct: type):
    return decode_body(await request.body() or b"{}", msgspec.json.Decoder(struct).decode,
                       "see /schema for the expected fields")

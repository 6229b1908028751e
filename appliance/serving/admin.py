"""Admin routes: promote, roll back, run deployments. Every one needs an admin key, even on loopback.

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
from appliance.errors import InvalidInput, NotAvailable, NotFound
from appliance.home import Home
from appliance.serving.docs import DeploymentRequest, PromoteRequest, ReasonRequest
from appliance.serving.state import ServingState

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

    @post("/v1/models/{name:str}/retrain", status_code=501, guards=[admin_guard],
          summary="Retrain a model (admin) — 501 until the training worker exists; run `appliance train NAME`")
    async def retrain(name: FromPath[str]) -> Response:
        raise NotAvailable(f"retraining over the API needs the training worker, which this appliance does not "
                           f"have yet; run `appliance train {name}` on the machine")

    @get("/v1/alerts", guards=[admin_guard], summary="Alerts, newest first: ?model=M, ?all=true for resolved ones (admin)")
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

    return [promote, rollback, start, advance, abort, status, retrain, alerts, ack, resolve]


async def _body(request: Request, struct: type):
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"{}", type=struct)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise InvalidInput(f"request body: {e}; see /schema for the expected fields") from None

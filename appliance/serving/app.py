"""The HTTP API: Litestar, JSON in and out, errors as RFC 9457 problem documents."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath
from litestar.exceptions import HTTPException

from appliance.errors import ApplianceError, InvalidInput, PayloadTooLarge
from appliance.home import Home
from appliance.serving.models import ModelPool
from storage.errors import StorageError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
REFRESH_SECONDS = 0.5
JSON = "application/json"
PROBLEM = "application/problem+json"

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def problem(status: int, title: str, detail: str) -> Response:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return Response(content=_encode(body), status_code=status, media_type=PROBLEM)


def create_app(home_root: Path, refresh_seconds: float = REFRESH_SECONDS) -> Litestar:
    """The API over one data directory; production models are reloaded when their alias moves."""
    pool = ModelPool()

    @asynccontextmanager
    async def lifespan(app: Litestar):
        home = Home(home_root)
        await asyncio.to_thread(pool.refresh, home)
        watcher = asyncio.create_task(_watch(home))
        try:
            yield
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            home.close()

    async def _watch(home: Home) -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            try:
                await asyncio.to_thread(pool.refresh, home)
            except Exception:  # keep watching: a locked or briefly unreadable database must not stop swaps
                log.exception("model refresh failed; retrying")

    @post("/v1/models/{name:str}/predict", status_code=200)
    async def predict(name: FromPath[str], request: Request) -> Response:
        model = pool.get(name)
        try:
            payload = _decode(await request.body())
        except msgspec.DecodeError as e:
            raise InvalidInput(f"request body is not valid JSON ({e}); send one record as an object "
                               "or several as a list of objects") from None
        single = type(payload) is dict
        records = [payload] if single else payload
        if type(records) is not list:
            raise InvalidInput("send one record as a JSON object or several as a list of objects")
        if not records:
            raise InvalidInput("the list of records is empty; send at least one record")
        if len(records) > model.max_batch_rows:
            raise PayloadTooLarge(f"{len(records)} records in one request; the limit for '{name}' is "
                                  f"{model.max_batch_rows} — split the batch")
        probabilities = model.predict(records).tolist()
        threshold = model.threshold
        if single:
            p = probabilities[0]
            body = {"model": name, "version": model.version, "probability": p, "label": int(p >= threshold)}
        else:
            body = {"model": name, "version": model.version,
                    "predictions": [{"probability": p, "label": int(p >= threshold)} for p in probabilities]}
        return Response(content=_encode(body), media_type=JSON)

    @get("/v1/models")
    async def list_models() -> Response:
        loaded = pool.loaded()
        body = [{"name": name, "serving_version": loaded[name].version if name in loaded else None}
                for name in sorted(pool.known())]
        return Response(content=_encode(body), media_type=JSON)

    @get("/healthz")
    async def healthz() -> Response:
        return Response(content=_encode({"status": "ok"}), media_type=JSON)

    @get("/readyz")
    async def readyz() -> Response:
        loaded = pool.loaded()
        waiting = sorted(pool.known() - loaded.keys())
        body = {"ready": not waiting, "serving": {n: m.version for n, m in loaded.items()},
                "not_serving": waiting}
        return Response(content=_encode(body), media_type=JSON, status_code=200 if not waiting else 503)

    def on_appliance_error(_: Request, exc: ApplianceError) -> Response:
        return problem(exc.status, exc.title, str(exc))

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

    return Litestar(
        route_handlers=[predict, list_models, healthz, readyz],
        lifespan=[lifespan],
        exception_handlers={ApplianceError: on_appliance_error, StorageError: on_storage_error,
                            HTTPException: on_http_error, Exception: on_unexpected},
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
        logging_config=None,  # the process configures logging once, in the CLI
        debug=False,
    )

"""Read route over monitoring.db: a model's results as a time series (any key scope may read)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import msgspec
import polars as pl
from litestar import Response, get
from litestar.params import FromPath, FromQuery

from appliance.home import Home
from appliance.monitoring.store import results

_encode = msgspec.json.Encoder().encode
ISO = "%Y-%m-%dT%H:%M:%S%.6fZ"


def monitoring_routes(root: Path, read_guard: Callable) -> list:
    """The monitoring route handlers over one data directory."""

    @get("/v1/models/{name:str}/monitoring", guards=[read_guard],
         summary="Monitoring results per event-time window: ?check=drift|quality|performance|estimated|serving|"
                 "machine|pipeline&since=2026-10-20")
    async def monitoring(name: FromPath[str], check: FromQuery[str | None] = None,
                         since: FromQuery[str | None] = None) -> Response:
        def read() -> list[dict]:
            with Home(root) as home:
                frame = results(home, name, check=check, since=since)
            return frame.with_columns(pl.col("window_start", "window_end").dt.strftime(ISO)).to_dicts()

        rows = await asyncio.to_thread(read)
        return Response(content=_encode({"model": name, "results": rows}), media_type="application/json")

    return [monitoring]

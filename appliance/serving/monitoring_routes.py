"""Read route over monitoring.db: a model's results as a time series (any key scope may read)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import polars as pl
from litestar import get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.types import Guard

from appliance.home import Home
from appliance.monitoring.store import results
from appliance.serving.bodies import MonitoringResult, MonitoringResults
from appliance.serving.docs import problem_responses

ISO = "%Y-%m-%dT%H:%M:%S%.6fZ"


def monitoring_routes(root: Path, read_guard: Guard) -> list[HTTPRouteHandler]:
    """The monitoring route handlers over one data directory."""

    @get(
        "/v1/models/{name:str}/monitoring",
        guards=[read_guard],
        responses=problem_responses({422}),
        summary="Monitoring results per event-time window: ?check=drift|quality|performance|estimated|serving|"
        "machine|pipeline&since=2026-10-20",
    )
    async def monitoring(
        name: FromPath[str], check: FromQuery[str | None] = None, since: FromQuery[str | None] = None
    ) -> MonitoringResults:
        def read() -> list[MonitoringResult]:
            with Home(root) as home:
                frame = results(home, name, check=check, since=since)  # parsed and refused there
            rows = frame.with_columns(pl.col("window_start", "window_end").dt.strftime(ISO)).to_dicts()
            return msgspec.convert(rows, list[MonitoringResult])

        return MonitoringResults(model=name, results=await asyncio.to_thread(read))

    return [monitoring]

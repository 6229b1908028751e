"""Read route for a model's report: the same HTML page `appliance report` writes (any key scope may read it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from litestar import get
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.types import Guard

from appliance.home import Home
from appliance.report.page import model_report
from appliance.serving.docs import problem_responses


def report_routes(root: Path, read_guard: Guard) -> list[HTTPRouteHandler]:
    """The report route handler over one data directory."""

    @get(
        "/v1/models/{name:str}/report",
        guards=[read_guard],
        media_type=MediaType.HTML,
        responses=problem_responses({422}),
        summary="The model's monitoring report as one self-contained HTML page: ?since=2026-10-20",
    )
    async def report(name: FromPath[str], since: FromQuery[str | None] = None) -> str:
        def read() -> str:
            with Home(root) as home:
                return model_report(home, name, since)  # an unknown model or a bad ?since= is refused there

        return await asyncio.to_thread(read)

    return [report]

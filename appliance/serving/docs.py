"""The API's OpenAPI schema and a docs page that need no internet.

Litestar's bundled doc sites load their JavaScript from CDNs; an air-gapped appliance serves
the JSON schema and one self-contained HTML page rendered from it on the server instead.
The request bodies, which the handlers decode themselves for speed, are described here.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.enums import MediaType, OpenAPIMediaType

from storage.database import MAX_INTEGER

# Bounds a client cannot pass without a 422 naming the field: past them SQLite cannot store the
# number, or an A/B report's sums overflow.
Version = Annotated[int, msgspec.Meta(ge=1, le=MAX_INTEGER)]
Position = Annotated[int, msgspec.Meta(ge=0, le=MAX_INTEGER)]
OutcomeValue = Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)]


class Outcome(msgspec.Struct):
    request_id: str
    outcome: OutcomeValue
    position: Position = 0      # which record of a list request (0 for a single record)


class FeedbackRequest(msgspec.Struct):
    outcomes: list[Outcome]


class PromoteRequest(msgspec.Struct):
    version: Version
    reason: str = ""


class ReasonRequest(msgspec.Struct):
    reason: str = ""


class DeploymentRequest(msgspec.Struct):
    strategy: str               # blue-green | canary | shadow | ab
    version: Version
    percent: float | None = None    # A/B: the candidate's share (default 50)
    split_key: str | None = None    # A/B: the request field to split by (default: the spec's)


_RECORD = {"type": "object", "description": "one record: the model's features by name, typed as its data contract "
                                            "declares them (a category as text or an integer code, a flag as "
                                            "true/false or 1/0); the entity key (an integer or a string, as "
                                            "declared; none for a model without one) and the event time (ISO "
                                            "8601 or Unix seconds; default now)",
           "additionalProperties": True}
REQUEST_BODIES: dict[tuple[str, str], dict] = {
    ("post", "/v1/models/{name}/predict"): {"oneOf": [_RECORD, {"type": "array", "items": _RECORD}]},
}
# OpenAPI 3.1 takes JSON Schema as is, local $defs included.
REQUEST_BODIES |= {("post", path): msgspec.json.schema(struct) for path, struct in (
    ("/v1/models/{name}/feedback", FeedbackRequest), ("/v1/models/{name}/promote", PromoteRequest),
    ("/v1/models/{name}/rollback", ReasonRequest), ("/v1/models/{name}/deployments", DeploymentRequest),
    ("/v1/models/{name}/deployments/advance", ReasonRequest), ("/v1/models/{name}/deployments/abort", ReasonRequest))}


_PREDICTION = {"type": "object", "required": ["probability", "label"],
               "properties": {"probability": {"type": "number"}, "label": {"type": "integer"}}}
_ANSWER = {"model": {"type": "string"}, "version": {"type": "integer"},
           "request_id": {"type": "string", "description": "send it back with the outcome, to /feedback"}}
_PROBLEM = {"description": "a problem document (RFC 9457) saying what to do next",
            "content": {"application/problem+json": {"schema": {"type": "object"}}}}
# The predict route is not a Litestar handler (serving/predict.py): its operation is written here.
PREDICT_OPERATION = {
    "summary": "Score one record (an object) or several (a list); the answer carries a request_id for feedback",
    "operationId": "predict",
    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
    "responses": {
        "200": {"description": "the scores, with the model version that answered",
                "headers": {"x-request-id": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"oneOf": [
                    {"type": "object", "properties": {**_ANSWER, **_PREDICTION["properties"]}},
                    {"type": "object", "properties": {**_ANSWER, "predictions": {"type": "array",
                                                                                 "items": _PREDICTION}}}]}}}},
        **{str(code): _PROBLEM for code in (401, 403, 404, 413, 422, 429, 503)},
    },
}


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated schema with the predict route and the request bodies the handlers decode themselves."""
    paths = schema.setdefault("paths", {})
    paths.setdefault("/v1/models/{name}/predict", {})["post"] = dict(PREDICT_OPERATION)
    for (method, path), body in REQUEST_BODIES.items():
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return schema


class SchemaJson(OpenAPIRenderPlugin):
    """``/schema/openapi.json``."""

    def __init__(self) -> None:
        super().__init__(path="/openapi.json", media_type=OpenAPIMediaType.OPENAPI_JSON, favicon="")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, describe(openapi_schema))


class OfflineDocs(OpenAPIRenderPlugin):
    """``/schema``: every route with its summary, parameters and request body, as plain HTML."""

    def __init__(self) -> None:
        super().__init__(path="/", media_type=MediaType.HTML, favicon="")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        schema = describe(openapi_schema)
        info = schema.get("info", {})
        e = html.escape
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(info.get('title', 'API'))}</title>",
                 "<style>body{font:15px/1.4 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
                 "code,pre{background:#f4f4f4;padding:.1em .3em}pre{padding:.6em;overflow:auto}"
                 "h2{font-size:1.05em;margin-top:1.6em}</style></head><body>",
                 f"<h1>{e(info.get('title', 'API'))} {e(str(info.get('version', '')))}</h1>",
                 "<p>Machine-readable schema: <a href='/schema/openapi.json'>/schema/openapi.json</a>. "
                 "Send an API key as <code>Authorization: Bearer apl_…</code>.</p>"]
        for path, item in sorted(schema.get("paths", {}).items()):
            for method, op in item.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                parts.append(f"<h2><code>{e(method.upper())} {e(path)}</code></h2>")
                if op.get("summary"):
                    parts.append(f"<p>{e(op['summary'])}</p>")
                if op.get("description"):
                    parts.append(f"<p>{e(op['description'])}</p>")
                body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
                if body:
                    parts.append(f"<pre>{e(msgspec.json.format(msgspec.json.encode(body)).decode())}</pre>")
        parts.append("</body></html>")
        return "".join(parts).encode()

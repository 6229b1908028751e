"""The API's OpenAPI schema and a docs page that need no internet.

Litestar's bundled doc sites load their JavaScript from CDNs; an air-gapped appliance serves
the JSON schema and one self-contained HTML page rendered from it on the server instead.
Litestar generates the schema of every route it serves from their typed bodies and answers
(``bodies``); the predict route, answered in front of Litestar for speed, is described here.

Answers and outcomes are each model's task's (``appliance.task``): the generic paths
(``/v1/models/{name}/…``) say what every task answers and takes; each served model's own paths
(``/v1/models/fraud/predict``, ``…/feedback``: concrete paths, which OpenAPI matches before templated
ones) say exactly what it answers and takes, its classes included.

Every route documents the problem statuses it can answer, each described once, in ``PROBLEMS``
(``problem_responses``; which statuses a Litestar route answers follows from what it is: ``app``).
"""

from __future__ import annotations

import copy
import html
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request
from litestar.enums import MediaType, OpenAPIMediaType
from litestar.openapi import ResponseSpec
from litestar.openapi.plugins import OpenAPIRenderPlugin

from appliance.serving.problems import PROBLEM
from appliance.task import Task

_RECORD = {
    "type": "object",
    "description": "one record: the model's features by name, typed as its data contract "
    "declares them (a category as text or an integer code, a flag as "
    "true/false or 1/0); the entity key (an integer or a string, as "
    "declared; none for a model without one) and the event time (ISO "
    "8601 or Unix seconds; default now)",
    "additionalProperties": True,
}
# The predict route's body: one record, or a list of them (inline: no component to point to).
PREDICT_BODY: dict[str, Any] = {"oneOf": [_RECORD, {"type": "array", "items": _RECORD}]}


def prediction_schema(task: Task | None, kind: str = "binary") -> dict:
    """One record's answer for a model of ``task`` (or, without one, any model of task ``kind``)."""
    kind = task.kind if task is not None else kind
    if kind == "binary":
        return {
            "type": "object",
            "required": ["probability", "label"],
            "title": "binary",
            "properties": {
                "probability": {
                    "type": "number",
                    "description": "the probability of the positive class: 1, or the value [target] positive names",
                },
                "label": {
                    **({"enum": list(task.classes)} if task is not None else {"type": ["integer", "string"]}),
                    "description": "the class at or above the threshold: 0/1, or a text target's value",
                },
            },
        }
    if kind == "regression":
        return {
            "type": "object",
            "required": ["value"],
            "title": "regression",
            "properties": {"value": {"type": "number", "description": "the predicted value"}},
        }
    described = "each class's probability by the class's text; they sum to 1"
    if task is None:
        chosen: dict[str, Any] = {"type": ["string", "integer"], "description": "the most probable class, as declared"}
        probabilities: dict[str, Any] = {
            "type": "object",
            "description": described,
            "additionalProperties": {"type": "number"},
        }
    else:
        texts = task.class_text()
        chosen = {"enum": list(task.classes), "description": "the most probable class, as declared"}
        probabilities = {
            "type": "object",
            "description": described,
            "required": texts,
            "properties": {t: {"type": "number"} for t in texts},
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "required": ["class", "probabilities"],
        "title": "multiclass",
        "properties": {"class": chosen, "probabilities": probabilities},
    }


def outcome_schema(task: Task) -> dict:
    """What a model of ``task`` takes as an outcome (``serving.feedback`` reads it)."""
    if task.flags:
        return {"enum": [0, 1, True, False], "description": "1 or 0 (or true/false)"}
    if task.classifier:
        return {"enum": list(task.classes), "description": "the class, as declared (its text reads too)"}
    return {"type": "number", "minimum": -1e12, "maximum": 1e12, "description": "the observed value"}


class Problem(msgspec.Struct):
    """A problem document (RFC 9457): what went wrong, and in its detail what to do next."""

    type: str
    title: str
    status: int
    detail: str


# The problem statuses the API answers, and what each means to a caller: every route's documented
# responses come from this table.
PROBLEMS: dict[int, str] = {
    401: "no API key, or an unknown or revoked one (once a key exists, or when the server listens beyond loopback, "
    "every route but the probes needs one)",
    403: "the key's scopes do not cover this route",
    404: "no such model (or version, run or alert)",
    409: "the action conflicts with the state it finds (a rejected version, a deployment running or moved on, a "
    "model training, an alert already resolved); the detail says what to do",
    413: "the body is over 4 MiB, or holds more records than the model takes at once; split it",
    422: "the body or a parameter cannot be read as the route takes it; the detail names the field",
    429: "over the key's (or the peer's) rate limit: retry after Retry-After seconds",
    503: "the model is not loaded yet; retry in a moment",
}


def problem_responses(statuses: set[int]) -> dict[int, ResponseSpec]:
    """The documented answers of a route that can answer ``statuses`` (keys of PROBLEMS), as Litestar takes them."""
    return {
        status: ResponseSpec(data_container=Problem, description=PROBLEMS[status], media_type=PROBLEM)
        for status in sorted(statuses)
    }


_ANSWER = {
    "model": {"type": "string"},
    "version": {"type": "integer"},
    "request_id": {"type": "string", "description": "send it back with the outcome, to /feedback"},
}
_PROBLEM_SCHEMA = msgspec.json.schema_components([Problem])[1]["Problem"]


def _answers(prediction: dict) -> list[dict]:
    # A request's answer: one record's (an object sent), or several (a list sent).
    single = {
        "type": "object",
        "title": f"{prediction['title']}: one record",
        "required": [*_ANSWER, *prediction["required"]],
        "properties": {**_ANSWER, **prediction["properties"]},
    }
    several = {
        "type": "object",
        "title": f"{prediction['title']}: several records",
        "required": [*_ANSWER, "predictions"],
        "properties": {**_ANSWER, "predictions": {"type": "array", "items": prediction}},
    }
    return [single, several]


def predict_operation(task: Task | None = None) -> dict:
    """The predict route's operation: for a model of ``task``, or (None) for every model, whatever its task.
    The route is not a Litestar handler (serving/predict.py): its operation is written here."""
    if task is None:
        answer = {
            "anyOf": [
                a for kind in ("binary", "multiclass", "regression") for a in _answers(prediction_schema(None, kind))
            ],
            "description": "by the model's task: binary probability and label; multiclass class and "
            "probabilities; regression value (see each model's own path)",
        }
    else:
        answer = {"oneOf": _answers(prediction_schema(task))}
    return {
        "summary": "Score one record (an object) or several (a list); the answer carries a request_id for feedback",
        "operationId": "predict",
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": PREDICT_BODY}}},
        "responses": {
            "200": {
                "description": "the answer, with the model version that answered",
                "headers": {"x-request-id": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": answer}},
            },
            **{
                str(code): {"description": PROBLEMS[code], "content": {PROBLEM: {"schema": _PROBLEM_SCHEMA}}}
                for code in (401, 403, 404, 413, 422, 429, 503)
            },
        },
    }


PREDICT_OPERATION = predict_operation()


def describe(schema: dict[str, Any], served: dict[str, Task] | None = None) -> dict[str, Any]:
    """The generated schema with the predict route, and each served model's own predict and feedback paths
    in its task's terms (``served``: model → task)."""
    schema = copy.deepcopy(schema)  # Litestar keeps the generated one, and the served models change
    paths = schema.setdefault("paths", {})
    for item in paths.values():
        for operation in item.values():
            if isinstance(operation, dict):  # Litestar documents a body it cannot read as a 400; the API answers 422
                operation.get("responses", {}).pop("400", None)
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body is not None and {"type": "null"} in _json_schema(body).get("oneOf", ()):
                body["required"] = False  # Litestar marks every body required; `data: X | None = None` may be left out
    paths.setdefault("/v1/models/{name}/predict", {})["post"] = copy.deepcopy(PREDICT_OPERATION)
    feedback = paths.get("/v1/models/{name}/feedback", {}).get("post")
    for model, task in sorted((served or {}).items()):
        prefix = f"/v1/models/{quote(model, safe='')}"
        predict = _for_model(predict_operation(task), model)
        predict["description"] = f"'{model}' is a {task.kind} model" + (
            f" of classes {', '.join(task.class_text())}" if task.kind == "multiclass" else ""
        )
        paths[f"{prefix}/predict"] = {"post": predict}
        if feedback is not None:
            operation = _for_model(feedback, model)
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _feedback_body(schema, feedback, task)}},
            }
            paths[f"{prefix}/feedback"] = {"post": operation}
    return schema


def _feedback_body(schema: dict[str, Any], feedback: dict[str, Any], task: Task) -> dict[str, Any]:
    # The generated feedback body (FeedbackRequest, and its Outcome, both components), inline, with the
    # outcome in the model's task's terms.
    body = _resolved(schema, _json_schema(feedback["requestBody"]))
    outcomes = body["properties"]["outcomes"]
    outcome = _resolved(schema, outcomes["items"])
    outcome["properties"]["outcome"] = outcome_schema(task)
    outcomes["items"] = outcome
    return body


def _json_schema(body: dict[str, Any]) -> dict[str, Any]:
    # The schema of a request body's JSON.
    schema: dict[str, Any] = body.get("content", {}).get("application/json", {}).get("schema", {})
    return schema


def _inlined(schema: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    # A schema node with each local $ref replaced by what it points to (a ref within itself stays a ref).
    if isinstance(node, list):
        return [_inlined(schema, n, seen) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        return _inlined(schema, _resolved(schema, node), (*seen, ref))
    return {k: _inlined(schema, v, seen) for k, v in node.items()}


def _resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    # A copy of a schema node, or of what its local $ref ("#/components/schemas/Name") points to.
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return copy.deepcopy(node)


def _for_model(operation: dict, model: str) -> dict:
    # A templated operation as one model's own: no name parameter, an operation id of its own.
    operation = copy.deepcopy(operation)
    operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "name"]
    if not operation["parameters"]:
        del operation["parameters"]
    operation["operationId"] = f"{operation.get('operationId', 'operation')}_{model}"
    return operation


Served = Callable[[], dict[str, Task]]  # the served models' tasks, now


class SchemaJson(OpenAPIRenderPlugin):
    """``/schema/openapi.json``."""

    def __init__(self, served: Served = dict) -> None:
        super().__init__(path="/openapi.json", media_type=OpenAPIMediaType.OPENAPI_JSON, favicon="")
        self.served = served

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, describe(openapi_schema, self.served()))


class OfflineDocs(OpenAPIRenderPlugin):
    """``/schema``: every route with its summary, parameters and request body, as plain HTML."""

    def __init__(self, served: Served = dict) -> None:
        super().__init__(path="/", media_type=MediaType.HTML, favicon="")
        self.served = served

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        schema = describe(openapi_schema, self.served())
        info = schema.get("info", {})
        e = html.escape
        parts = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{e(info.get('title', 'API'))}</title>",
            "<style>body{font:15px/1.4 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
            "code,pre{background:#f4f4f4;padding:.1em .3em}pre{padding:.6em;overflow:auto}"
            "h2{font-size:1.05em;margin-top:1.6em}</style></head><body>",
            f"<h1>{e(info.get('title', 'API'))} {e(str(info.get('version', '')))}</h1>",
            "<p>Machine-readable schema: <a href='/schema/openapi.json'>/schema/openapi.json</a>. "
            "Send an API key as <code>Authorization: Bearer apl_…</code>.</p>",
        ]
        for path, item in sorted(schema.get("paths", {}).items()):
            for method, op in item.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                parts.append(f"<h2><code>{e(method.upper())} {e(path)}</code></h2>")
                if op.get("summary"):
                    parts.append(f"<p>{e(op['summary'])}</p>")
                if op.get("description"):
                    parts.append(f"<p>{e(op['description'])}</p>")
                body = _inlined(schema, _json_schema(op.get("requestBody", {})))  # a reader sees the fields
                if body:
                    parts.append(f"<pre>{e(msgspec.json.format(msgspec.json.encode(body)).decode())}</pre>")
        parts.append("</body></html>")
        return "".join(parts).encode()

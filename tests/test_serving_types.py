"""The typed routes through a real server: the OpenAPI schema is whole (every $ref resolves in it, every
route is in it, every body is described), and bodies are read strictly and refused as problem documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx

# The POST routes that take no body: acting on an alert needs only its id.
BODILESS_POSTS = {"/v1/alerts/{alert_id}/ack", "/v1/alerts/{alert_id}/resolve"}
SCHEMA_KEYWORDS = {"type", "oneOf", "anyOf", "allOf", "properties", "enum", "const", "items"}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(document: dict, ref: str) -> Any:
    # A local JSON pointer ("#/components/schemas/Name"); None if it points nowhere in the document.
    if not ref.startswith("#/"):
        return None
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is_schema(document: dict, node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    if "$ref" in node:
        return isinstance(_resolve(document, node["$ref"]), dict)
    return bool(SCHEMA_KEYWORDS & node.keys())


def test_the_openapi_schema_resolves_and_describes_every_route(server):
    response = server.client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    refs = set(_refs(schema))
    assert refs, "the typed routes' bodies and answers are components, pointed to by $ref"
    unresolved = sorted(ref for ref in refs if _resolve(schema, ref) is None)
    assert not unresolved, f"$refs that point nowhere in the document: {unresolved}"

    paths = schema["paths"]
    openapi_path = server.app.litestar.openapi_config.path
    missing, bodiless = [], set()
    for route in server.app.litestar.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        if path == openapi_path or path.startswith(f"{openapi_path}/"):
            continue  # the schema's own pages (/schema, /schema/openapi.json) are no API operations
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            operation = paths.get(path, {}).get(method.lower())
            if operation is None:
                missing.append(f"{method} {path}")
            elif method == "POST" and "requestBody" not in operation:
                bodiless.add(path)
    assert not missing, f"routes the app serves that the schema leaves out: {missing}"
    assert bodiless == BODILESS_POSTS, f"POST routes without a described body: {sorted(bodiless - BODILESS_POSTS)}"

    assert "/v1/models/fraud/feedback" in paths and "/v1/models/fraud/predict" in paths  # the served model's own
    for path, item in paths.items():
        for method, operation in item.items():
            body = operation.get("requestBody")
            if body is not None:
                assert _is_schema(schema, body["content"]["application/json"]["schema"]), f"{method} {path}"
            for status, answer in operation["responses"].items():
                for media in answer.get("content", {}).values():
                    assert _is_schema(schema, media["schema"]), f"{method} {path} {status}"
    # typed answers: Litestar's generated components, not free-form objects
    assert paths["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"]
    outcome = paths["/v1/models/fraud/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert outcome["properties"]["outcomes"]["items"]["properties"]["outcome"]["enum"] == [0, 1, True, False]
    rollback = paths["/v1/models/{name}/rollback"]["post"]["requestBody"]
    assert rollback["required"] is False  # no body reads as no reason
    # the offline page shows each body's fields, not a $ref a reader would have to follow
    page = server.client.get("/schema").text
    promote = page[page.index("POST /v1/models/{name}/promote") :]
    assert "$ref" not in page and "&quot;version&quot;" in promote[: promote.index("<h2>")]


def _problem(response: httpx.Response, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and set(body) == {"type", "title", "status", "detail"}
    for phrase in phrases:
        assert phrase in body["detail"], body["detail"]


def test_typed_bodies_are_read_strictly_and_refused_as_problem_documents(server):
    c = server.client
    admin = server.admin_headers()
    assert c.get("/readyz").json() == {"ready": True, "serving": {"fraud": 1}, "not_serving": []}
    promote = "/v1/models/fraud/promote"
    _problem(c.post(promote, content=b"{not json", headers=admin), 422, "not valid JSON", "/schema")
    _problem(c.post(promote, json={"version": "2"}, headers=admin), 422, "Expected `int`, got `str`", "version")
    _problem(c.post(promote, json={"reason": "no version"}, headers=admin), 422, "missing required field `version`")
    _problem(c.post(promote, headers=admin), 422, "request body is empty", "/schema")
    _problem(c.post("/v1/models/fraud/deployments", json=[], headers=admin), 422, "Expected `object`, got `array`")
    # feedback says what its model takes; an unknown model is a 404 whatever its body
    _problem(
        c.post("/v1/models/fraud/feedback", json={"outcomes": {}}, headers=admin),
        422,
        "Expected `array`",
        "for binary model 'fraud'",
        "1 or 0",
    )
    _problem(c.post("/v1/models/fraud/feedback", headers=admin), 422, "request body is empty", "binary model 'fraud'")
    _problem(c.post("/v1/models/nope/feedback", content=b"{not json", headers=admin), 404, "nope")
    # a body that may be left out: none, {} and null all read as no reason
    assert c.post("/v1/models/fraud/deployments/abort", headers=admin).status_code == 404  # nothing running
    started = c.post("/v1/models/fraud/deployments", json={"strategy": "shadow", "version": 2}, headers=admin)
    assert started.status_code == 201 and started.json()["candidate_version"] == 2
    report = c.get("/v1/models/fraud/deployments", headers=admin).json()
    assert report["deployment"]["strategy"] == "shadow" and "shadow" in report and "step" not in report
    aborted = c.post("/v1/models/fraud/deployments/abort", content=b"null", headers=admin)
    assert aborted.status_code == 200 and aborted.json()["status"] == "aborted"
    assert c.post(promote, json={"version": 2, "reason": "typed"}, headers=admin).json()["version"] == 2
    rolled = c.post("/v1/models/fraud/rollback", headers=admin)
    assert rolled.status_code == 200 and rolled.json()["version"] == 1

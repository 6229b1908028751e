"""The gateway: hashed scoped keys, the secure-by-default rules, the rate limit — as rules and through a real server."""

from __future__ import annotations

import json
import time

import pytest

from appliance.errors import Forbidden, Unauthorized
from appliance.gateway.access import Gatekeeper, RateLimiter
from appliance.gateway.keys import create_key, list_keys, revoke_key
from appliance.home import Home
from tests.conftest import SAMPLE_RECORD
from tests.test_cli import appliance


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_refills_at_the_rate():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.take("k", 2) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("k", 2) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("k", 2) == 0.0
    assert limiter.take("other", 2) == 0.0  # buckets are per caller


def test_keys_are_stored_hashed_and_the_rules_follow_scope_exposure_and_revocation(home_dir):
    with Home(home_dir) as home:
        gate = Gatekeeper(exposed=False, clock=Clock())
        # No key yet: predict/feedback/read open on loopback only; admin never open.
        assert gate.admit("predict", None, "127.0.0.1").key_id is None
        assert gate.admit("read", None, "::1").key_id is None
        with pytest.raises(Unauthorized, match="admin routes always need"):
            gate.admit("admin", None, "127.0.0.1")
        with pytest.raises(Unauthorized, match="beyond loopback"):
            gate.admit("predict", None, "10.0.0.7")
        with pytest.raises(Unauthorized, match="beyond loopback"):
            Gatekeeper(exposed=True).admit("predict", None, "127.0.0.1")
        assert Gatekeeper(exposed=True).admit("health", None, "10.0.0.7").key_id is None

        key, token = create_key(home.conn, ["predict"], name="app")
        stored = home.conn.execute("SELECT * FROM api_keys").fetchone()
        assert token.split("_", 2)[2] not in " ".join(str(v) for v in dict(stored).values())
        gate.update_keys(list_keys(home.conn))
        with pytest.raises(Unauthorized, match="API keys exist"):
            gate.admit("predict", None, "127.0.0.1")
        assert gate.admit("predict", token, "127.0.0.1").key_id == key.id
        assert gate.admit("read", token, "127.0.0.1").key_id == key.id
        with pytest.raises(Forbidden, match="not feedback"):
            gate.admit("feedback", token, "127.0.0.1")
        with pytest.raises(Unauthorized, match="not valid"):
            gate.admit("predict", token[:-2] + "xx", "127.0.0.1")
        with pytest.raises(Unauthorized, match="not valid"):
            gate.admit("predict", "nonsense", "127.0.0.1")
        _, admin_token = create_key(home.conn, ["admin"])
        revoke_key(home.conn, key.id)
        gate.update_keys(list_keys(home.conn))
        with pytest.raises(Unauthorized, match="revoked"):
            gate.admit("predict", token, "127.0.0.1")
        assert gate.admit("predict", admin_token, "127.0.0.1")  # admin may call everything
        actions = [e.action for e in home.registry.audit_log(limit=3)]
        assert actions == ["key_revoked", "key_created", "key_created"]


def _wait_for(predicate, what: str, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_the_server_enforces_keys_scopes_revocation_and_rate_limits(server):
    c = server.client
    assert c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 200  # open: no key yet
    assert c.post("/v1/models/fraud/promote", json={"version": 2}).status_code == 401  # admin never open
    made = appliance(server.home, "keys", "create", "--scope", "predict", "--rate", "3")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    _wait_for(
        lambda: c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 401,
        "the server did not close open access once a key existed",
    )
    r = c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD)
    assert r.headers["content-type"].startswith("application/problem+json") and "API key" in r.json()["detail"]
    assert c.get("/metrics").status_code == 401 and c.get("/schema/openapi.json").status_code == 401
    assert c.get("/healthz").status_code == 200
    assert (
        c.post(
            "/v1/models/fraud/predict", json=SAMPLE_RECORD, headers={"authorization": "Bearer apl_nope_nope"}
        ).status_code
        == 401
    )

    time.sleep(1.1)  # a full bucket: 3 requests per second
    auth = {"authorization": f"Bearer {token}"}
    statuses = [
        c.post(
            "/v1/models/fraud/predict", json=SAMPLE_RECORD, headers={**auth, "x-forwarded-for": f"10.0.0.{i}"}
        ).status_code
        for i in range(5)
    ]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]  # a forged header changes nothing
    limited = c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers={"x-api-key": token})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert c.post("/v1/models/fraud/promote", json={"version": 2}, headers=auth).status_code == 403
    assert c.post("/v1/models/fraud/feedback", json={"outcomes": []}, headers=auth).status_code == 403

    key_id = token.split("_")[1]
    assert appliance(server.home, "keys", "revoke", key_id).returncode == 0
    time.sleep(1.1)
    _wait_for(
        lambda: c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers=auth).status_code == 401,
        "a revoked key still worked",
    )
    admin = {"authorization": f"Bearer {_admin(server)}"}
    _wait_for(lambda: c.get("/metrics", headers=admin).status_code == 200, "the new admin key was not picked up")
    assert 'appliance_gateway_rejected_total{reason="rate"} 3' in c.get("/metrics", headers=admin).text


def test_open_access_goes_by_the_socket_peer_whatever_x_forwarded_for_says(server):
    c = server.client
    server.app.predict.state.gate.peer_rate = 3  # open access (no key yet): 3 requests a second per peer
    # Other loopback addresses would be other peers, each with a full bucket; a non-loopback one would
    # lose open access. The header is the client's word, so neither happens: one peer, one bucket.
    statuses = [
        c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers={"x-forwarded-for": forged}).status_code
        for forged in ("127.0.0.2", "127.0.0.3", "10.1.2.3", "127.0.0.4", "127.0.0.5")
    ]
    assert statuses == [200, 200, 200, 429, 429]


def test_a_page_of_another_site_cannot_call_the_open_api_from_the_operators_browser(server):
    """A browser sends Origin with a page's POST, and a text/plain one needs no permission first: a page on any
    site could send predictions and feedback (labels a retrain learns from) to the open loopback API."""
    c = server.client
    outcome = {"outcomes": [{"request_id": "r-1", "position": 0, "outcome": 1}]}
    for path, body in (("/v1/models/fraud/predict", SAMPLE_RECORD), ("/v1/models/fraud/feedback", outcome)):
        for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):  # another port is another origin
            refused = c.post(path, content=json.dumps(body), headers={"origin": origin, "content-type": "text/plain"})
            assert refused.status_code == 403 and "web page at" in refused.json()["detail"], (path, refused.text)
    own = f"http://{c.base_url.host}:{c.base_url.port}"  # a page the API itself served, and programs: no Origin
    assert c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD, headers={"origin": own}).status_code == 200
    assert c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 200
    assert c.get("/healthz", headers={"origin": "http://evil.example"}).status_code == 200


def test_callers_without_a_key_add_no_metrics_labels(server):
    c = server.client
    admin = {"authorization": f"Bearer {_admin(server)}"}  # a key exists: every route needs one
    _wait_for(
        lambda: c.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).status_code == 401,
        "the server did not close open access once a key existed",
    )
    for i in range(3):  # refused before the name is looked up: a made-up name must not become a label
        assert c.post(f"/v1/models/made-up-{i}/predict", json=SAMPLE_RECORD).status_code == 401
    assert c.post("/v1/models/made-up/predict", json=SAMPLE_RECORD, headers=admin).status_code == 404
    metrics = c.get("/metrics", headers=admin).text
    assert "made-up" not in metrics
    assert 'appliance_requests_total{model="",version="",arm="",status="401"} 3' in metrics
    assert 'appliance_requests_total{model="fraud",version="",arm="",status="401"}' in metrics


def _admin(server) -> str:
    with Home(server.home) as home:
        return create_key(home.conn, ["admin"], name="test")[1]


def test_the_first_key_says_it_ends_open_access(home_dir):
    from tests.conftest import cli

    code, out, err = cli(home_dir, "keys", "create", "--scope", "predict")
    assert code == 0 and "first key ends open access" in err and out.strip().splitlines()[-1].startswith("apl_")
    assert "open access" not in cli(home_dir, "keys", "create", "--scope", "admin")[2]  # it ended with the first

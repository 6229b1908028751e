"""A rollback while a deployment runs ends that deployment in the rollback's own transaction (aborted, "rolled
back") and says so; afterwards deploy status, GET /v1/models and a new `deploy start` agree."""

from __future__ import annotations

import time

import pytest

from appliance.deployment import deployments
from appliance.home import Home
from tests.conftest import cli, ok


@pytest.mark.parametrize("strategy", ["canary", "shadow", "ab", "blue-green"])
def test_a_rollback_ends_the_deployment_against_the_version_it_replaced(home_dir, strategy):
    # v2 in production after v1; a deployment of v1 runs against v2; the rollback puts v1 back
    ok(home_dir, "promote", "fraud", "2")
    ok(home_dir, "deploy", "fraud", "start", strategy, "--version", "1")
    said = ok(home_dir, "rollback", "fraud")
    assert said.splitlines() == [
        "fraud: rolled back from v2 to v1",
        f"fraud: {strategy} deployment 1 of v1 ended with the rollback (aborted: rolled back); start a new one "
        "with `appliance deploy fraud start`",
    ]
    assert "— aborted: rolled back" in ok(home_dir, "deploy", "fraud", "status")
    with Home(home_dir) as home:
        assert deployments.current(home, "fraud") is None
        assert [e.action for e in home.registry.audit_log("fraud", limit=2)] == ["deployment_aborted", "rollback"]
    ok(home_dir, "deploy", "fraud", "start", "canary", "--version", "2")  # nothing left running in its way


def test_a_rollback_with_nothing_to_go_back_to_leaves_the_deployment_running(home_dir):
    ok(home_dir, "deploy", "fraud", "start", "blue-green", "--version", "2")  # not yet switched: v1 the only one
    code, _, err = cli(home_dir, "rollback", "fraud")
    assert code == 1 and "no earlier production version" in err
    with Home(home_dir) as home:
        assert deployments.current(home, "fraud") is not None


def test_a_rollback_after_a_blue_green_switch_ends_it_and_the_server_agrees(server):
    ok(server.home, "deploy", "fraud", "start", "blue-green", "--version", "2")
    ok(server.home, "deploy", "fraud", "advance")  # switched: v2 serves, v1 warm
    admin = server.admin_headers()
    rolled = server.client.post("/v1/models/fraud/rollback", json={"reason": "slow"}, headers=admin).json()
    assert rolled["version"] == 1 and rolled["rolled_back_from"] == 2
    assert rolled["ended_deployment"] == {
        "id": 1,
        "strategy": "blue-green",
        "candidate_version": 2,
        "status": "aborted",
        "reason": "rolled back: slow",
    }
    deadline = time.monotonic() + 10
    while (served := server.client.get("/v1/models", headers=admin).json()[0])["deployment"] is not None:
        assert time.monotonic() < deadline, served
        time.sleep(0.05)
    assert served["serving_version"] == 1
    code, _, err = cli(server.home, "deploy", "fraud", "advance", "--force", "--reason", "test")
    assert code == 1 and "has no deployment running" in err

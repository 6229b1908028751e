"""Starting a deployment refuses a split it would not run as asked — a split key no request carries, a
percent for a strategy that sets its own share — in the same words from the CLI and the API."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.deployment import deployments
from appliance.home import Home
from tests.conftest import cli, in_production, ok, running_server
from tests.own_data import write_loans

# loans has no entity key: its A/B split goes by [deployment] ab_key, sent beside the request features.
SPLIT_FIELDS = "application, income, term, grade, cosigned"


@pytest.fixture(scope="module")
def loans_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """loans with v1 in production and v2 registered beside it."""
    root = tmp_path_factory.mktemp("deploy-checks")
    home = root / "home"
    model = in_production(home, write_loans(root / "data"))
    ok(home, "train", model)
    return home


@pytest.fixture
def home(loans_home: Path, tmp_path: Path) -> Path:
    shutil.copytree(loans_home, tmp_path / "home")
    return tmp_path / "home"


def nothing_started(home: Path) -> bool:
    with Home(home) as h:
        return deployments.latest(h, "loans") is None


def test_cli_refuses_a_split_key_no_request_carries_and_names_the_ones_it_can_be(home):
    code, out, err = cli(home, "deploy", "loans", "start", "ab", "--version", "2", "--key", "nosuch")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: split key 'nosuch' is not a field a request for 'loans'")
    assert err.rstrip().endswith(SPLIT_FIELDS)
    assert nothing_started(home)
    assert "split by grade" in ok(home, "deploy", "loans", "start", "ab", "--version", "2", "--key", "grade")


def test_cli_refuses_a_percent_for_a_canary_rather_than_running_it_at_its_first_step(home):
    code, _, err = cli(home, "deploy", "loans", "start", "canary", "--version", "2", "--percent", "30")
    assert code == 1 and err.count("\n") == 1
    assert "takes no percent" in err and "first step (5 %)" in err and "[deployment] canary_steps" in err
    assert nothing_started(home)
    assert "5 % of traffic on the candidate" in ok(home, "deploy", "loans", "start", "canary", "--version", "2")


def test_api_refuses_the_same_in_its_own_terms(home):
    with running_server(home) as server:
        headers = server.admin_headers()

        def start(**body):
            return server.client.post("/v1/models/loans/deployments", json={"version": 2, **body}, headers=headers)

        refused = start(strategy="ab", split_key="nosuch")
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].endswith(SPLIT_FIELDS)
        refused = start(strategy="ab", percent=150)
        assert refused.status_code == 422
        assert refused.json()["detail"] == "percent must be above 0 and below 100, got 150"  # no CLI flag in it
        refused = start(strategy="canary", percent=30)
        assert refused.status_code == 422 and "canary_steps" in refused.json()["detail"]
        assert nothing_started(home)
        started = start(strategy="ab", percent=30, split_key="application")
        assert started.status_code == 201, started.text
        assert (started.json()["split_key"], started.json()["traffic_percent"]) == ("application", 30.0)

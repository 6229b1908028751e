"""Feedback the API refuses, over a real server: a regression outcome outside the min and max the data contract
declares for the target is a 422 naming them; a second, different outcome for the same prediction is a 409
naming it (nothing of the request recorded) unless the request says "replace": true; the same one again is a
retry, accepted."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from appliance.layout import Layout
from tests.conftest import SAMPLE_RECORD, in_production, running_server
from tests.task_data import write_deliveries


@pytest.fixture(scope="module")
def eta_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression (delivery minutes, string courier keys) whose contract bounds the minutes to 0..240."""
    root = tmp_path_factory.mktemp("eta-bounds")
    spec = write_deliveries(root / "data", days=8, per_day=150)
    contract = spec.parent / "contract.toml"
    text = contract.read_text()
    assert text.endswith('name = "minutes"\ntype = "float"\nmin = 0.0\n')
    contract.write_text(text + "max = 240.0\n")
    in_production(root / "home", spec)
    return root / "home"


def _stored(home: Path, request_id: str) -> list[float]:
    conn = sqlite3.connect(Layout(home).predictions_db)
    try:
        return [r[0] for r in conn.execute("SELECT outcome FROM feedback WHERE request_id = ?", (request_id,))]
    finally:
        conn.close()


def test_a_regression_outcome_outside_the_contracts_range_is_refused_naming_it(eta_home: Path, tmp_path: Path):
    home = tmp_path / "home"
    shutil.copytree(eta_home, home)
    record = {"courier": "c-007", "ordered_at": "2026-05-12T10:00:00Z", "distance_km": 3.5, "zone": "hills"}
    with running_server(home) as server:
        answer = server.client.post("/v1/models/eta/predict", json=record | {"rush": 1, "items": 2})
        assert answer.status_code == 200, answer.text
        request_id = answer.json()["request_id"]
        for outcome, bound in ((-5.0, "min 0"), (300.5, "max 240")):
            sent = {"outcomes": [{"request_id": request_id, "outcome": outcome}]}
            refused = server.client.post("/v1/models/eta/feedback", json=sent)
            assert refused.status_code == 422, refused.text
            detail = refused.json()["detail"]
            assert detail.startswith(f"outcomes[0].outcome: {outcome:g} is outside the range the data contract")
            assert "'minutes' (min 0 and max 240)" in detail and bound in detail
        assert _stored(home, request_id) == []
        taken = server.client.post(
            "/v1/models/eta/feedback", json={"outcomes": [{"request_id": request_id, "outcome": 240.0}]}
        )
        assert taken.status_code == 200 and taken.json()["accepted"] == 1
    assert _stored(home, request_id) == [240.0]


def test_a_second_different_outcome_is_a_conflict_unless_it_replaces(server):
    ids = [server.client.post("/v1/models/fraud/predict", json=SAMPLE_RECORD).json()["request_id"] for _ in range(2)]

    def feedback(outcomes: list[int], **extra: bool):
        body = {"outcomes": [{"request_id": r, "outcome": o} for r, o in zip(ids, outcomes)]} | extra
        return server.client.post("/v1/models/fraud/feedback", json=body)

    assert feedback([1, 0]).json()["accepted"] == 2
    assert feedback([1, 0]).status_code == 200  # a retry of the same outcomes
    conflict = feedback([0, 1])
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["detail"] == (
        f"request_id '{ids[0]}' position 0 already has the outcome 1, not 0 (and 1 more like it); nothing was "
        'recorded: to correct a label, send the outcomes again with "replace": true'
    )
    assert [_stored(server.home, r) for r in ids] == [[1.0], [0.0]]
    corrected = feedback([0, 0], replace=True)
    assert corrected.status_code == 200 and corrected.json()["accepted"] == 2
    assert [_stored(server.home, r) for r in ids] == [[0.0], [0.0]]

"""Multiclass and regression models through the whole loop, by the CLI and a real server: init → ingest →
train → gates → serve → predict → feedback → monitor (realized and estimated) → the accuracy alert's
retrain → canary.

The data sets (``task_data``) are unlike the sample and the binary sets: a skewed delivery time from
string courier keys, and four text classes of support tickets declared only in the contract.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import running_server
from task_data import TEAMS, write_deliveries, write_tickets

from appliance.cli import _example_request, main
from appliance.deployment import deployments
from appliance.home import Home
from appliance.replay import replay


def _cli(home: Path, *args: str) -> None:
    assert main(["--home", str(home), *args]) == 0, args


def _trained(tmp_path: Path, spec: Path, model: str, source: str, capsys) -> tuple[Path, str]:
    home = tmp_path / "home"
    _cli(home, "init", "--spec", str(spec))
    _cli(home, "ingest", model, str(spec.parent / source))
    capsys.readouterr()
    _cli(home, "train", model)
    trained = capsys.readouterr().out
    _cli(home, "promote", model, "1")
    _cli(home, "features", "materialize", model)
    return home, trained


def _no_monitor(root: Path, model: str, say) -> None:
    return None


def _monitor_table(home: Path, model: str, check: str, capsys) -> list[list[str]]:
    capsys.readouterr()
    _cli(home, "monitor", model, "--check", check)
    return [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("2026-")]


def _wrong_outcome_refused(server, model: str, request_id: str, outcome: object) -> None:
    """Feedback whose outcome the model's task cannot take is refused, naming the field."""
    wrong = server.client.post(
        f"/v1/models/{model}/feedback",
        json={"outcomes": [{"request_id": request_id, "position": 0, "outcome": outcome}]},
    )
    assert wrong.status_code == 422 and "outcomes[0].outcome" in wrong.json()["detail"], wrong.text


def _live_days_monitored(home: Path, server, model: str, capsys) -> tuple[list, list[list[str]]]:
    """The live days replayed through the server, each labelled at once, then `appliance jobs run monitor`:
    the days, and the rows of the realized performance table, a window each."""
    days = replay(home, model, server.url, speed=0, label_delay_hours=0, monitor=_no_monitor)
    assert days[-1].labels > 0
    _cli(home, "jobs", "run", "monitor", model)
    return days, _monitor_table(home, model, "performance", capsys)


def _retrained_by_its_alert(home: Path, model: str) -> None:
    """`appliance jobs run monitor` judged the alert rules on the run's rows: the live days' accuracy fell
    past the critical margin, whose alert retrained (the command waits for it) and registered v2."""
    from appliance.alerts.records import list_alerts

    with Home(home) as h:
        [critical] = [a for a in list_alerts(h.conn, model) if a.rule == "accuracy-critical"]
        [action] = critical.actions
        assert (action.action, action.status, action.detail.get("version")) == ("retrain", "succeeded", 2), (
            action.detail
        )
        assert [v.version for v in h.registry.versions(model)] == [1, 2]


def _canary(server, home: Path, model: str, records: list[dict]) -> deployments.Deployment:
    """Start a canary of v2 and send traffic until the server's analysis has judged it (a canary splits by
    entity key, so ``records`` name several)."""
    _cli(home, "deploy", model, "start", "canary", "--version", "2")
    deadline = time.monotonic() + 60
    with Home(home) as h:
        while (d := deployments.latest(h, model)).status == "running":
            assert time.monotonic() < deadline, "the canary was never judged"
            for record in records:
                assert server.client.post(f"/v1/models/{model}/predict", json=record).status_code == 200
            time.sleep(0.05)
    return d


def test_a_regression_model_runs_the_whole_loop(tmp_path: Path, capsys):
    spec = write_deliveries(tmp_path / "data", live_slower=1.5)
    home, trained = _trained(tmp_path, spec, "eta", "history.parquet", capsys)
    assert "RMSE" in trained and "R²" in trained and "AUC" not in trained
    assert "gate beats_baseline: pass" in trained and "gate onnx_parity: pass" in trained
    with Home(home) as h:
        v1 = h.registry.version("eta", 1)
        assert v1.status == "registered" and v1.metrics["r2"] > 0.6 and v1.metrics["rmse"] > 0
        name, example = _example_request(h)
    assert name == "eta" and isinstance(example["courier"], str)
    with running_server(home) as server:
        c = server.client
        one = c.post("/v1/models/eta/predict", json=example)
        assert one.status_code == 200, one.text
        body = one.json()
        assert set(body) >= {"value", "version"} and "probability" not in body and body["value"] > 0
        batch = c.post("/v1/models/eta/predict", json=[example, {**example, "distance_km": 30.0}]).json()
        first, far = (p["value"] for p in batch["predictions"])
        assert first == pytest.approx(body["value"]) and far > first  # thirty kilometres take longer
        schema = c.get("/schema/openapi.json").json()
        assert "value" in str(schema)
        _wrong_outcome_refused(server, "eta", body["request_id"], "late")  # a word for a number
        days, performance = _live_days_monitored(home, server, "eta", capsys)
        rmse = [float(row[3]) for row in performance]  # window, version, labelled, rmse, mae, r2, estimates…
        assert len(rmse) == len(days) and all(r > v1.metrics["rmse"] for r in rmse)  # the live days run slower
        estimated = _monitor_table(home, "eta", "estimated", capsys)
        assert any(row[3] == "rmse" for row in estimated)  # DLE's estimate without labels, per window
        _retrained_by_its_alert(home, "eta")
        judged = _canary(server, home, "eta", [{**example, "courier": f"c-{i:03d}"} for i in range(60)])
    assert judged.status in ("completed", "rolled_back")
    if judged.status == "rolled_back":
        assert "value" in judged.reason, judged.reason


def test_a_multiclass_model_runs_the_whole_loop(tmp_path: Path, capsys):
    spec = write_tickets(tmp_path / "data", trainer="mlp", live_swapped=True)
    home, trained = _trained(tmp_path, spec, "triage", "tickets.csv", capsys)
    assert "macro F1" in trained and "accuracy" in trained
    with Home(home) as h:
        v1 = h.registry.version("triage", 1)
        assert v1.status == "registered" and v1.metrics["accuracy"] > 0.4
        assert sum(v1.metrics[f"confusion.{t}.{p}"] for t in TEAMS for p in TEAMS) == v1.metrics["rows"]
        _, example = _example_request(h)
    with running_server(home) as server:
        c = server.client
        body = c.post("/v1/models/triage/predict", json=example).json()
        assert body["class"] in TEAMS and set(body["probabilities"]) == set(TEAMS)
        assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert body["class"] == max(body["probabilities"], key=body["probabilities"].get)
        _wrong_outcome_refused(server, "triage", body["request_id"], "legal")  # a class the model does not know
        days, performance = _live_days_monitored(home, server, "triage", capsys)
        accuracy = [float(row[3]) for row in performance]  # window, version, labelled, accuracy, macro_f1, …
        # billing and tech swapped in the live days: the realized accuracy falls below the evaluation's
        assert len(accuracy) == len(days) and all(a < v1.metrics["accuracy"] for a in accuracy)
        estimated = _monitor_table(home, "triage", "estimated", capsys)
        assert estimated, "CBPE gave no estimate"
        _retrained_by_its_alert(home, "triage")
        judged = _canary(server, home, "triage", [example] * 20)
    assert judged.status in ("completed", "rolled_back")
    if judged.status == "rolled_back":
        assert "class" in judged.reason, judged.reason


def _refused(home: Path, capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["--home", str(home), *args]) == 1, args
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_target_that_does_not_fit_its_task_is_refused_before_anything_is_trained(tmp_path: Path, capsys):
    import polars as pl

    # Classes typed unlike the contract's target, or missing from its allowed values: refused at init.
    spec = write_tickets(tmp_path / "typed")
    spec.write_text(spec.read_text().replace('task = "multiclass"', 'task = "multiclass"\nclasses = [0, 1, 2, 3]'))
    assert "are not text, but 'team' is a string" in _refused(tmp_path / "h1", capsys, "init", "--spec", str(spec))
    spec.write_text(spec.read_text().replace("classes = [0, 1, 2, 3]", 'classes = ["billing", "tech", "legal"]'))
    assert "['legal'] are not among the contract's allowed_values" in _refused(
        tmp_path / "h1", capsys, "init", "--spec", str(spec)
    )
    # A class the spec leaves out: its rows are quarantined and training stops, naming it.
    spec.write_text(
        spec.read_text().replace('classes = ["billing", "tech", "legal"]', 'classes = ["billing", "tech", "sales"]')
    )
    _cli(tmp_path / "h2", "init", "--spec", str(spec))
    err = _refused(tmp_path / "h2", capsys, "train", "triage")
    assert "not among the classes ['billing', 'tech', 'sales']: 'abuse'" in err
    assert "add them to [target] classes" in err
    with Home(tmp_path / "h2") as h:
        assert h.registry.versions("triage") == []
    # A binary spec over three codes would train "class 0 against the rest": refused, pointing at multiclass.
    codes = write_tickets(tmp_path / "codes")
    frame = pl.read_csv(codes.parent / "tickets.csv").with_columns(
        team=pl.col("team").replace_strict({"billing": 0, "tech": 1, "sales": 2, "abuse": 2})
    )
    frame.write_csv(codes.parent / "tickets.csv")
    contract = codes.parent / "contract.toml"
    contract.write_text(
        contract.read_text().replace(
            'type = "string"\nallowed_values = ["billing", "tech", "sales", "abuse"]', 'type = "integer"'
        )
    )
    codes.write_text(codes.read_text().replace('task = "multiclass"\n', ""))
    _cli(tmp_path / "h3", "init", "--spec", str(codes))
    assert 'set task = "multiclass"' in _refused(tmp_path / "h3", capsys, "train", "triage")
    # A constant regression target, and a text target for a regression.
    flat = write_deliveries(tmp_path / "flat")
    pl.read_parquet(flat.parent / "history.parquet").with_columns(minutes=pl.lit(12.0)).write_parquet(
        flat.parent / "history.parquet"
    )
    _cli(tmp_path / "h4", "init", "--spec", str(flat))
    assert "has a single value (12.0)" in _refused(tmp_path / "h4", capsys, "train", "eta")
    worded = write_deliveries(tmp_path / "worded")
    contract = worded.parent / "contract.toml"
    contract.write_text(
        contract.read_text().replace('name = "minutes"\ntype = "float"', 'name = "minutes"\ntype = "string"')
    )
    assert 'a text target is a class: set task = "multiclass"' in _refused(
        tmp_path / "h5", capsys, "init", "--spec", str(worded)
    )

"""A binary target spelled as text (churned/stayed): `init --from --positive` drafts it, the model trains on 1 =
the positive value, and everything a user touches speaks the values — the contract's allowed values, the
answers' label, feedback, and monitoring's labelled windows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
from conftest import cli, ok, running_server

from appliance.home import Home

START = dt.datetime(2026, 10, 3, 6, 0)


def _accounts(n: int, seed: int, start: dt.datetime) -> tuple[pl.DataFrame, list[str]]:
    """Accounts every 6 minutes: the longer the tenure and the cheaper the plan, the likelier they stay."""
    r = np.random.default_rng(seed)
    tenure = r.integers(1, 60, n)
    plan = r.choice(["basic", "plus", "max"], n)
    logit = 1.5 - tenure / 12 + np.where(plan == "max", 1.2, 0.0)
    churned = r.random(n) < 1 / (1 + np.exp(-logit))
    frame = pl.DataFrame(
        {
            "opened": [start + dt.timedelta(minutes=6 * i) for i in range(n)],
            "tenure_months": tenure,
            "plan": plan,
        }
    )
    return frame, ["churned" if c else "stayed" for c in churned]


def _written(folder: Path, target: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame, status = _accounts(3600, 3, START)  # 15 days
    path = folder / "accounts.csv"
    frame.with_columns(status=pl.Series(target or status)).write_csv(path)
    return path


def test_two_text_values_need_their_positive_named_unless_plain(tmp_path: Path):
    source = _written(tmp_path / "data")
    home = tmp_path / "home"
    code, out, err = cli(home, "init", "--from", str(source), "--target", "status", "--out", str(tmp_path / "a"))
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "holds two values 'churned' and 'stayed'" in err and "--positive churned or --positive stayed" in err
    assert not (tmp_path / "a").exists()

    code, _, err = cli(home, "init", "--from", str(source), "--target", "status", "--positive", "gone")
    assert code != 0 and "--positive 'gone' is not a value of target 'status'" in err, err
    code, _, err = cli(home, "init", "--from", str(source), "--target", "tenure_months", "--positive", "1")
    assert code != 0 and "--positive names one of a binary target's two text values" in err, err

    # yes/no: one value plainly is the positive one, and the assumption line says so
    yes_no = _written(tmp_path / "yn", ["yes" if i % 3 == 0 else "no" for i in range(3600)])
    out = ok(home, "init", "--from", str(yes_no), "--target", "status", "--name", "yn", "--out", str(tmp_path / "b"))
    assert (
        "positive 'yes' (of 'no' and 'yes', 'yes' plainly is the positive one; --positive no for the other)" in out
    ), out
    assert 'positive = "yes"' in (tmp_path / "b" / "yn.toml").read_text()

    # a hand-edited spec whose text target names no positive class is refused at registration
    spec = tmp_path / "b" / "yn.toml"
    spec.write_text(spec.read_text().replace('positive = "yes"', ""))
    code, _, err = cli(tmp_path / "home2", "init", "--spec", str(spec))
    assert code != 0 and "[target] positive names none" in err and 'set positive = "no" or "yes"' in err, err


def test_a_text_target_runs_the_whole_loop_in_its_own_values(tmp_path: Path):
    source = _written(tmp_path / "data")
    home = tmp_path / "home"
    out = ok(home, "init", "--from", str(source), "--target", "status", "--positive", "churned", "--out", str(tmp_path))
    assert "positive 'churned' (--positive)" in out
    contract = (tmp_path / "accounts.contract.toml").read_text()
    assert 'allowed_values = ["churned", "stayed"]' in contract
    trained = ok(home, "train", "accounts")
    assert "registered accounts v1" in trained, trained
    ok(home, "promote", "accounts", "1")
    with Home(home) as h:
        auc = h.registry.version("accounts", 1).metrics["auc"]
    assert auc > 0.7  # trained on churned = 1: the tenure signal points the right way

    live, truth = _accounts(480, 4, START + dt.timedelta(days=16))  # two days after the history
    records = [{**r, "opened": r["opened"].isoformat() + "Z"} for r in live.to_dicts()]
    with running_server(home) as server:
        c = server.client
        answer = c.post("/v1/models/accounts/predict", json=records).json()
        predictions = answer["predictions"]
        assert {p["label"] for p in predictions} == {"churned", "stayed"}
        assert all((p["label"] == "churned") == (p["probability"] >= 0.5) for p in predictions)
        single = c.post("/v1/models/accounts/predict", json=records[0]).json()
        assert single["label"] in ("churned", "stayed")

        rid = answer["request_id"]
        for wrong in (1, True, "Churned"):  # the values only, as the contract spells them
            refused = c.post(
                "/v1/models/accounts/feedback",
                json={"outcomes": [{"request_id": rid, "position": 0, "outcome": wrong}]},
            )
            assert refused.status_code == 422, refused.text
            assert 'one of its classes: "stayed", "churned"' in refused.json()["detail"], refused.text
        outcomes = [{"request_id": rid, "position": i, "outcome": o} for i, o in enumerate(truth)]
        sent = c.post("/v1/models/accounts/feedback", json={"outcomes": outcomes})
        assert sent.status_code == 200, sent.text

    ok(home, "jobs", "run", "monitor", "accounts")
    performance = json.loads(ok(home, "monitor", "accounts", "--check", "performance", "--json"))
    auc = [r for r in performance if r["method"] == "auc" and r["value"] is not None]
    assert auc and all(r["value"] > 0.6 for r in auc), performance  # the text labels read back as churned = 1

    # a retrain learns from the outcomes: the log's 0/1 back to the contract's text, accepted
    retrained = ok(home, "train", "accounts", "--retrain")
    assert "480 accepted, 0 quarantined" in retrained and "registered accounts v2" in retrained, retrained

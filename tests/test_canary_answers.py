"""The canary's answers rule judges the candidate's live answers against its own evaluation answers (its
monitoring reference), not against production's: a retrain that answers differently from production, as it
was evaluated to, is promoted; a candidate whose serving is broken (a feature fed a constant, outputs
inverted) is rolled back saying what was compared. Real trained versions and their ONNX models score the
rows; the answers go into a real predictions.db, and the deployment API judges them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from appliance.data.declared import model_task
from appliance.deployment import deployments
from appliance.deployment.canary import psi
from appliance.home import Home
from appliance.monitoring.reference import ARTIFACT, load_reference
from appliance.spec import load_spec
from appliance.training.pipeline import train
from appliance.validation.comparison import version_output
from tests.conftest import in_production, ok, small_spec
from tests.task_data import write_deliveries
from tests.test_deployment_tasks import Log, _judge, _values


@pytest.fixture(scope="module")
def fraud_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's data directory with v3 beside v1 in production: v3 ranks as well but weighs fraud 30× in
    training, so every score of it is higher than v1's on the same rows, as it was in its own evaluation."""
    root = tmp_path_factory.mktemp("fraud")
    shutil.copytree(trained_home, root / "home")
    with Home(root / "home") as home:
        overrides = {
            "feature_fraction = 0.9": "feature_fraction = 0.9\nscale_pos_weight = 30",
            "min_recall = 0.30": "min_recall = 0.20",
        }
        home.add_model(load_spec(small_spec(root, **overrides)))
        outcome = train(home, home.spec("fraud"))
        assert outcome.version.version == 3 and outcome.version.status == "registered"
    return root / "home"


@pytest.fixture(scope="module")
def eta_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression (delivery minutes, string courier keys): v1 in production learned slowly, so its values
    crowd the middle; v2, trained at the usual rate, spreads them as the minutes do."""
    root = tmp_path_factory.mktemp("eta")
    spec = write_deliveries(root / "data")
    usual = spec.read_text()
    spec.write_text(usual.replace("learning_rate = 0.1", "learning_rate = 0.015"))
    model = in_production(root / "home", spec)
    spec.write_text(usual)
    with Home(root / "home") as home:
        home.add_model(load_spec(spec))
    ok(root / "home", "train", model)
    return root / "home"


def _copy(home: Path, tmp_path: Path) -> Path:
    shutil.copytree(home, tmp_path / "home")
    return tmp_path / "home"


def _canary(
    home: Home,
    model: str,
    candidate: int,
    constant: str | None = None,
    inverted: bool = False,
    rows: pl.DataFrame | None = None,
):
    """Start a canary of ``candidate`` and log one step of traffic: the candidate's evaluation rows (or
    ``rows``), split between the arms, each answered by its arm's version through its ONNX model. A broken
    serving path of the candidate feeds its feature ``constant`` one value (the rows' median), or
    ``inverted`` serves 1 - p. The deployment and verdict after the analysis, and the PSI between the two
    arms' answers (the old rule's comparison)."""
    task = model_task(home.spec(model))
    rows = load_reference(home, model, candidate) if rows is None else rows
    d = deployments.start(home, model, "canary", candidate)
    production_rows, candidate_rows = rows[::2], rows[1::2]
    if constant is not None:
        candidate_rows = candidate_rows.with_columns(pl.lit(candidate_rows[constant].median()).alias(constant))
    production = version_output(home, model, d.baseline_version, production_rows, task)
    served = version_output(home, model, candidate, candidate_rows, task)
    if inverted:
        served = 1 - served
    answer = _values if task.kind == "regression" else _probabilities
    log = Log(home)
    log.predict(d, "production", answer(production))
    log.predict(d, "candidate", answer(served))
    after, verdict = _judge(home, log)
    log.store.close()
    return after, verdict, psi(production, served)


def _probabilities(scores: np.ndarray) -> list[dict]:
    return [{"probability": float(p), "label": int(p >= 0.5)} for p in scores]


def test_a_binary_retrain_scoring_higher_than_production_as_it_did_in_its_evaluation_is_promoted(fraud_home, tmp_path):
    with Home(_copy(fraud_home, tmp_path)) as home:
        after, verdict, between_arms = _canary(home, "fraud", 3)
        assert between_arms > 0.5  # the old rule's comparison: far apart, and it rolled the retrain back
        assert verdict.passed, verdict.reasons
        assert verdict.answers_against == "its own evaluation answers" and verdict.figures["psi"] < 0.1
        assert after.status == "running" and after.traffic_percent == 25
        advanced = home.registry.audit_log("fraud", limit=1)[0]
        assert (
            advanced.action == "canary_advanced" and "against its own evaluation answers" in advanced.detail["reason"]
        )


def test_a_binary_candidate_serving_inverted_scores_is_rolled_back_saying_what_was_compared(fraud_home, tmp_path):
    with Home(_copy(fraud_home, tmp_path)) as home:
        final, verdict, _ = _canary(home, "fraud", 3, inverted=True)
        assert final.status == "rolled_back" and home.registry.alias("fraud", "production") == 1
        assert final.reason.startswith("score distribution PSI ")
        assert "against its own evaluation answers" in final.reason
        assert verdict.figures["psi"] > verdict.figures["psi_allowed"] > verdict.figures["production_psi"]


def test_a_regression_retrain_spreading_its_values_as_evaluated_is_promoted(eta_home, tmp_path):
    with Home(_copy(eta_home, tmp_path)) as home:
        final, verdict, between_arms = _canary(home, "eta", 2)
        assert between_arms > 0.2
        assert verdict.passed and verdict.answers_against == "its own evaluation answers"
        # The spec's steps are [50, 100]: one judged step, then production.
        assert final.status == "completed" and home.registry.alias("eta", "production") == 2


def test_a_regression_candidate_whose_distance_is_served_as_a_constant_is_rolled_back(eta_home, tmp_path):
    with Home(_copy(eta_home, tmp_path)) as home:
        final, verdict, _ = _canary(home, "eta", 2, constant="distance_km")
        assert final.status == "rolled_back" and home.registry.alias("eta", "production") == 1
        assert final.reason.startswith("predicted value distribution PSI ")
        assert "against its own evaluation answers" in final.reason
        assert verdict.figures["psi"] > verdict.figures["psi_allowed"] > verdict.figures["production_psi"]


def test_without_evaluation_answers_the_candidate_is_compared_with_production_and_the_verdict_says_why(
    fraud_home, tmp_path
):
    with Home(_copy(fraud_home, tmp_path)) as home:
        rows = load_reference(home, "fraud", 3)
        run_id = home.registry.version("fraud", 3).run_id
        home.tracking.conn.execute("DELETE FROM artifacts WHERE run_id = ? AND name = ?", (run_id, ARTIFACT))
        home.tracking.conn.commit()
        final, verdict, between_arms = _canary(home, "fraud", 3, rows=rows)
        assert final.status == "rolled_back" and "score distribution PSI" in final.reason
        assert "against production" in final.reason and "v3 has no evaluation answers" in final.reason
        assert verdict.figures["psi"] == pytest.approx(between_arms)

"""Deployments of multiclass and regression models: canary analysis, shadow agreement and A/B outcomes read
the prediction log's columns of each task, through the real deployment API over a real predictions.db."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from appliance.cli import main
from appliance.deployment import deployments
from appliance.deployment.canary import class_share_psi
from appliance.home import Home
from appliance.spec import load_spec
from storage.prediction_log import PredictionStore
from tests.conftest import small_spec

CLASSES = ("low", "medium", "high")
BINARY_TARGET = 'column = "is_fraud"\nthreshold = 0.5'
# A canary step is judged once each arm has this many predictions.
MIN_SAMPLE = 200


def _respec(home: Home, tmp: Path, task: str) -> None:
    """Declare the sample model a multiclass (classes from the contract) or a regression model. Its trained
    versions stay as they are: the analysis reads only what the prediction log says each arm answered."""
    # A/B intervals from 3 outcomes an arm, so the tests' small hand-written feedback is judged.
    overrides = {"min_sample = 200": f"min_sample = {MIN_SAMPLE}\nab_min_outcomes = 3"}
    if task == "multiclass":
        overrides[BINARY_TARGET] = 'column = "is_fraud"\ntask = "multiclass"'
    else:
        overrides[BINARY_TARGET] = 'column = "is_fraud"\ntask = "regression"'
    path = small_spec(tmp, **overrides)
    if task == "multiclass":
        contract = path.parent / "contract.toml"
        text = contract.read_text()
        binary = 'name = "is_fraud"\ntype = "integer"\nnullable = false\nallowed_values = [0, 1]'
        assert binary in text
        contract.unlink()  # a link to the bundled contract; this copy declares the classes
        contract.write_text(
            text.replace(
                binary,
                f'name = "is_fraud"\ntype = "string"\nnullable = false\nallowed_values = {json.dumps(list(CLASSES))}',
            )
        )
    home.add_model(load_spec(path))


class Log:
    """Rows written straight into the data directory's predictions.db, as the server's log writer would."""

    def __init__(self, home: Home):
        self.store = PredictionStore(home.layout.predictions_db)
        self.rows = 0

    def predict(
        self, d: deployments.Deployment, arm: str, answers: list[dict], status: int = 200, latency_ms: float = 4.0
    ) -> list[str]:
        """Log one prediction per answer (its probability, label, value, probabilities); returns request ids."""
        version = d.candidate_version if arm == "candidate" else d.baseline_version
        rows, ids = [], []
        for answer in answers:
            self.rows += 1
            rid = f"r{self.rows:06d}"
            ids.append(rid)
            probabilities = answer.get("probabilities")
            rows.append(
                (
                    rid,
                    0,
                    d.model,
                    version,
                    arm,
                    d.id,
                    time.time(),
                    None,
                    None,
                    "{}",
                    answer.get("probability"),
                    answer.get("label"),
                    latency_ms,
                    status,
                    answer.get("value"),
                    json.dumps(probabilities) if probabilities is not None else None,
                )
            )
        self.store.append(rows)
        return ids

    def shadow(self, d: deployments.Deployment, served: list[dict], shadowed: list[dict]) -> None:
        """Log production's answers and the shadow's answers to the same requests."""
        ids = self.predict(d, "production", served)
        self.store.append(
            [],
            [
                (
                    rid,
                    0,
                    d.id,
                    d.candidate_version,
                    s.get("probability"),
                    s.get("label"),
                    6.0,
                    s.get("value"),
                    json.dumps(s["probabilities"]) if "probabilities" in s else None,
                )
                for rid, s in zip(ids, shadowed)
            ],
        )

    def feedback(self, d: deployments.Deployment, ids: list[str], outcomes: list[float], replace: bool = False) -> None:
        sent = [(rid, 0, o) for rid, o in zip(ids, outcomes)]
        assert self.store.attach_feedback(d.model, sent, replace=replace) == []


def _classes(probabilities: list[list[float]]) -> list[dict]:
    """Multiclass answers as the log holds them: chosen class's probability and index, and every class's."""
    return [{"probability": max(p), "label": int(np.argmax(p)), "probabilities": p} for p in probabilities]


def _one_class(index: int) -> list[float]:
    """Class probabilities that pick one class."""
    return [0.8 if i == index else 0.1 for i in range(len(CLASSES))]


def _values(values) -> list[dict]:
    return [{"value": float(v)} for v in values]


def _judge(home: Home, log: Log):
    judged = deployments.analyze_canaries(home, log.store)
    assert len(judged) == 1
    return judged[0]


def _class_mix(rng: np.random.Generator, n: int, shares: list[float]) -> list[list[float]]:
    """n rows of class probabilities whose argmax falls on each class with the given shares."""
    rows = []
    for chosen in rng.choice(len(shares), size=n, p=shares):
        p = rng.dirichlet([1.0] * len(shares)) * 0.4
        p[chosen] += 0.6
        rows.append([float(x) for x in p])
    return rows


def test_multiclass_canary_passes_identical_arms_and_rolls_back_a_shift_in_predicted_classes(home_dir, tmp_path):
    rng = np.random.default_rng(7)
    production = _class_mix(rng, MIN_SAMPLE, [0.6, 0.3, 0.1])
    with Home(home_dir) as home:
        _respec(home, tmp_path, "multiclass")
        log = Log(home)
        d = deployments.start(home, "fraud", "canary", 2)
        log.predict(d, "production", _classes(production))
        log.predict(d, "candidate", _classes(production))
        after, verdict = _judge(home, log)
        assert verdict.passed and verdict.figures["psi"] == pytest.approx(0.0, abs=1e-12)
        assert after.status == "running" and after.traffic_percent == 25

        # The next step's candidate predicts the rare class half the time: the class shares move, the canary
        # rolls back saying so. Its PSI is the class-share PSI of the two arms' labels, computed by hand here.
        shifted = _class_mix(rng, MIN_SAMPLE, [0.3, 0.2, 0.5])
        log.predict(after, "production", _classes(production))
        log.predict(after, "candidate", _classes(shifted))
        final, verdict = _judge(home, log)
        # The canary is judged on everything since it began: both steps' rows of each arm.
        e = np.bincount([int(np.argmax(p)) for p in production + production], minlength=3) / (2 * MIN_SAMPLE)
        a = np.bincount([int(np.argmax(p)) for p in production + shifted], minlength=3) / (2 * MIN_SAMPLE)
        assert verdict.figures["psi"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
        assert final.status == "rolled_back" and home.registry.alias("fraud", "production") == 1
        assert "predicted class shares PSI" in final.reason and "allowed 0.2" in final.reason
        log.store.close()


def test_class_share_psi_noise_of_one_distribution_is_small_and_codes_outside_the_classes_count_for_none():
    rng = np.random.default_rng(1)
    shares = [0.5, 0.2, 0.2, 0.1]
    a, b = rng.choice(4, 2000, p=shares), rng.choice(4, 2000, p=shares)
    assert class_share_psi(a, b, 4) < 0.01
    assert class_share_psi(a, rng.choice(4, 2000, p=[0.1, 0.2, 0.2, 0.5]), 4) > 0.5
    # A code outside the classes is not a class: it lowers every share alike, like a missing answer.
    assert class_share_psi([0, 1, 2, 2], [0, 1, 2, 2, -1, 7], 3) > 0
    assert class_share_psi([0, 1, 2], [], 3) == 0.0


def test_regression_canary_judges_the_value_distribution_and_the_error_rate(home_dir, tmp_path):
    rng = np.random.default_rng(3)
    values = rng.gamma(4.0, 10.0, MIN_SAMPLE)
    with Home(home_dir) as home:
        _respec(home, tmp_path, "regression")
        log = Log(home)
        d = deployments.start(home, "fraud", "canary", 2)
        log.predict(d, "production", _values(values))
        log.predict(d, "candidate", _values(values[::-1]))
        after, verdict = _judge(home, log)
        assert verdict.passed and verdict.figures["psi"] == pytest.approx(0.0, abs=1e-12)

        # Values three times as high: every one lands in production's top bin. The canary is judged on all it
        # has seen since it began, so half the candidate's answers moved.
        log.predict(after, "production", _values(values))
        log.predict(after, "candidate", _values(values * 3))
        final, verdict = _judge(home, log)
        assert not verdict.passed and verdict.figures["psi"] > 0.2
        assert final.status == "rolled_back" and "predicted value distribution PSI" in final.reason

        # The error-rate rule holds for every task: failed requests log no value.
        d = deployments.start(home, "fraud", "canary", 2)
        log.predict(d, "production", _values(values))
        log.predict(d, "candidate", _values(values[: MIN_SAMPLE - 20]))
        log.predict(d, "candidate", [{}] * 20, status=500)
        final, verdict = _judge(home, log)
        assert verdict.figures["candidate_error_rate"] == pytest.approx(20 / MIN_SAMPLE)
        assert verdict.figures["psi"] < 0.2 and final.status == "rolled_back"
        assert final.reason.startswith("error rate 10.00% (20 of 200) vs production 0.00% (0 of 200)")
        log.store.close()


# Production picks "low" for the first 20 rows and "high" for the last 20. The shadow agrees on rows 0-9
# and 20-39 and picks "medium" on rows 10-19.
SERVED = [[0.6, 0.3, 0.1]] * 20 + [[0.2, 0.1, 0.7]] * 20
SHADOWED = [[0.6, 0.3, 0.1]] * 10 + [[0.3, 0.5, 0.2]] * 10 + [[0.2, 0.1, 0.7]] * 10 + [[0.1, 0.4, 0.5]] * 10


def test_multiclass_shadow_reports_class_agreement_and_the_psi_of_each_class_probability(home_dir, tmp_path):
    with Home(home_dir) as home:
        _respec(home, tmp_path, "multiclass")
        log = Log(home)
        d = deployments.start(home, "fraud", "shadow", 2)
        log.shadow(d, _classes(SERVED), _classes(SHADOWED))
        shadow = deployments.report(home, log.store, d)["shadow"]
        log.store.close()
    assert shadow["pairs"] == 40 and shadow["agreement"] == pytest.approx(30 / 40)
    # 40 rows make 2 bins, split at the median of production's probability of the class:
    # low: production 0.6 ×20 and 0.2 ×20 (split 0.4); the shadow has 30 rows below, 10 above;
    # medium: production 0.3 ×20 and 0.1 ×20 (split 0.2); the shadow has 10 below, 30 above;
    # high: production 0.1 ×20 and 0.7 ×20 (split 0.4); the shadow has 20 and 20.
    # PSI of shares (½, ½) against (¾, ¼) is ¼·ln(3/2) + ¼·ln 2 = ¼·ln 3.
    assert shadow["class_psi"] == pytest.approx({"low": math.log(3) / 4, "medium": math.log(3) / 4, "high": 0.0})
    assert shadow["production_p99_ms"] == 4.0 and shadow["shadow_p99_ms"] == 6.0


def test_regression_shadow_reports_mean_absolute_difference_relative_to_production_and_value_psi(
    home_dir, tmp_path, capsys
):
    served = [-10.0, 20.0, 30.0, 40.0] * 10
    with Home(home_dir) as home:
        _respec(home, tmp_path, "regression")
        log = Log(home)
        d = deployments.start(home, "fraud", "shadow", 2)
        log.shadow(d, _values(served), _values([v + 6 for v in served]))
        log.store.close()
    # `appliance deploy fraud status` prints the report after the deployment's line.
    capsys.readouterr()
    assert main(["--home", str(home_dir), "deploy", "fraud", "status"]) == 0
    first, _, body = capsys.readouterr().out.partition("\n")
    assert first.startswith("fraud: shadow deployment")
    shadow = json.loads(body)["shadow"]
    # Every shadow value is 6 above production's, whose mean |value| is 25; production's median (25) splits
    # 2 bins (½, ½), and the shadow's -4, 26, 36, 46 fall ¼ below it, ¾ above.
    assert shadow["pairs"] == 40 and shadow["mean_absolute_difference"] == pytest.approx(6.0)
    assert shadow["relative_difference"] == pytest.approx(6 / 25)
    assert shadow["value_psi"] == pytest.approx(math.log(3) / 4)
    assert shadow["correlation"] == pytest.approx(1.0)


def _welch(a: list[float], b: list[float]) -> tuple[float, tuple[float, float]]:
    """Mean of b minus mean of a and Welch's t interval, by SciPy."""
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    return float(np.mean(b) - np.mean(a)), (ci.low, ci.high)


def _newcombe(a: list[float], b: list[float]) -> tuple[float, float]:
    """Newcombe's hybrid score interval for the difference of two proportions, by statsmodels."""
    return confint_proportions_2indep(sum(b), len(b), sum(a), len(a), method="newcomb", compare="diff")


def test_multiclass_ab_compares_accuracy_per_arm(home_dir, tmp_path):
    with Home(home_dir) as home:
        _respec(home, tmp_path, "multiclass")
        log = Log(home)
        d = deployments.start(home, "fraud", "ab", 2)
        # Production: class indices 0,1,2,0,... against outcomes right 7 times in 10; the candidate 6 in 8.
        prod_labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        prod_outcomes = [0, 1, 2, 0, 1, 2, 0, 2, 0, 1]
        cand_labels = [2, 2, 1, 0, 0, 1, 2, 0]
        cand_outcomes = [2, 2, 1, 0, 1, 1, 0, 0]
        prod, cand = ([_one_class(c) for c in labels] for labels in (prod_labels, cand_labels))
        log.feedback(d, log.predict(d, "production", _classes(prod)), prod_outcomes)
        log.feedback(d, log.predict(d, "candidate", _classes(cand)), cand_outcomes)
        log.predict(d, "candidate", _classes(cand[:3]))  # no feedback yet
        ab = deployments.report(home, log.store, d)["ab"]
        log.store.close()
    assert (ab["measure"], ab["better"]) == ("accuracy", "higher")
    assert ab["arms"] == [
        {"arm": "production", "predictions": 10, "with_outcome": 10, "accuracy": 0.7},
        {"arm": "candidate", "predictions": 11, "with_outcome": 8, "accuracy": 0.75},
    ]
    production_right, candidate_right = [1.0] * 7 + [0.0] * 3, [1.0] * 6 + [0.0] * 2
    assert ab["difference"] == pytest.approx(0.05)
    # Each prediction is right or wrong: the interval is one made for proportions.
    assert ab["ci95"] == pytest.approx(_newcombe(production_right, candidate_right))
    assert ab["verdict"] == "no difference shown yet (the always-valid interval includes 0)"


def test_regression_ab_compares_mean_absolute_error_per_arm_lower_being_better(home_dir, tmp_path):
    with Home(home_dir) as home:
        _respec(home, tmp_path, "regression")
        log = Log(home)
        d = deployments.start(home, "fraud", "ab", 2)
        log.feedback(d, log.predict(d, "production", _values([10, 20, 30, 40])), [12, 15, 30, 49])
        ids = log.predict(d, "candidate", _values([10, 20, 30]))
        log.feedback(d, ids[:1], [11])
        # One outcome on the candidate's side: its MAE and the difference so far, but no interval below the minimum.
        single = deployments.report(home, log.store, d)["ab"]
        assert single["arms"][1]["mae"] == 1.0 and single["difference"] == -3.0 and single["ci95"] is None
        assert single["verdict"] == "not enough outcomes yet: 4 and 1 of 3 an arm"
        log.feedback(d, ids, [9, 18, 33], replace=True)  # the first outcome corrected, the others arrived
        failed = log.predict(d, "candidate", [{}], status=500)
        log.feedback(d, failed, [25])  # a failed request has no value to score
        ab = deployments.report(home, log.store, d)["ab"]
        log.store.close()
    assert (ab["measure"], ab["better"]) == ("mae", "lower")
    production_errors, candidate_errors = [2.0, 5.0, 0.0, 9.0], [1.0, 2.0, 3.0]
    assert ab["arms"] == [
        {"arm": "production", "predictions": 4, "with_outcome": 4, "mae": 4.0},
        {"arm": "candidate", "predictions": 3, "with_outcome": 3, "mae": 2.0},
    ]
    diff, ci = _welch(production_errors, candidate_errors)
    assert ab["difference"] == pytest.approx(-2.0) and ab["difference"] == pytest.approx(diff)
    assert ab["ci95"] == pytest.approx(ci)

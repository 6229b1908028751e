"""Deployments: the analysis math, the state machine over metadata.db, and rollouts through a real server."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from appliance.deployment import deployments
from appliance.deployment.analysis import ab_report, shadow_report
from appliance.deployment.canary import ArmSample, judge_canary, psi
from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.gateway.keys import create_key
from appliance.home import Home
from appliance.serving.router import bucket
from appliance.spec import DeploymentSection, load_spec
from appliance.training.pipeline import train
from tests.conftest import SAMPLE_RECORD, small_spec


def test_split_buckets_are_sticky_uniform_and_per_deployment():
    keys = [f"u{i:05d}" for i in range(20_000)]
    positions = [bucket(k, 1) for k in keys]
    assert positions == [bucket(k, 1) for k in keys]
    share = sum(p < 25 for p in positions) / len(keys)
    assert 0.23 < share < 0.27
    assert sum(bucket(k, 1) < 5 and bucket(k, 2) < 5 for k in keys) < 0.01 * len(keys)
    # Raising the share only adds keys to the candidate: everyone below 5 is below 25.
    assert all(p < 25 for p in positions if p < 5)


def test_psi_is_zero_for_equal_samples_and_grows_with_shift():
    rng = np.random.default_rng(0)
    base = rng.beta(2, 8, 5000)
    assert psi(base, base) == pytest.approx(0.0, abs=1e-12)
    assert psi(base, rng.beta(2, 8, 5000)) < 0.02
    assert psi(base, rng.beta(5, 5, 5000)) > 0.5


def test_canary_verdict_names_every_failed_check():
    policy = DeploymentSection(min_sample=10, max_error_rate_increase=0.05, max_p99_latency_ratio=2.0, max_psi=0.2)
    rng = random.Random(1)
    scores = [rng.random() for _ in range(400)]
    good = ArmSample(scores, [10.0] * 400, 0)
    assert judge_canary(good, ArmSample(scores[::-1], [11.0] * 400, 0), policy).passed
    bad = ArmSample([s * 0.1 for s in scores], [50.0] * 400, 100)
    verdict = judge_canary(good, bad, policy)
    assert not verdict.passed and len(verdict.reasons) == 3
    assert "error rate" in verdict.reasons[0] and "latency" in verdict.reasons[1] and "PSI" in verdict.reasons[2]
    # A p99 difference under the noise floor never fails a canary, whatever the ratio.
    assert judge_canary(ArmSample(scores, [0.5] * 400, 0), ArmSample(scores, [3.0] * 400, 0), policy).passed


def test_a_list_request_counts_once_for_latency_and_failure_however_many_records_it_holds():
    # (probability, latency_ms, status, label, value, probabilities, position): 100 single-record requests at
    # 4 ms, then one stalled 50-record list at 80 ms whose records all carry its latency, and one failed list.
    single = [(0.2, 4.0, 200, 0, None, None, 0)] * 100
    stalled = [(0.3, 80.0, 200, 0, None, None, i) for i in range(50)]
    failed = [(None, 9.0, 500, None, None, None, i) for i in range(10)]
    sample = ArmSample.from_rows(single + stalled + failed)
    assert sample.n == 102 and sample.errors == 1 and len(sample.outputs) == 150
    assert sorted(sample.latencies_ms)[-1] == 80.0 and sorted(sample.latencies_ms)[-3] == 4.0


def test_ab_interval_of_binary_outcomes_is_newcombes_and_the_always_valid_one_is_wider():
    rng = np.random.default_rng(3)
    a, b = rng.binomial(1, 0.10, 800), rng.binomial(1, 0.16, 900)
    report = ab_report(
        {"production": 1000, "candidate": 1000},
        [("production", float(x)) for x in a] + [("candidate", float(x)) for x in b],
        30,
    )
    assert report.difference == pytest.approx(b.mean() - a.mean())
    newcombe = confint_proportions_2indep(b.sum(), len(b), a.sum(), len(a), method="newcomb", compare="diff")
    assert report.ci95 == pytest.approx(newcombe)
    low, high = report.always_valid95
    assert low < report.ci95[0] and high > report.ci95[1]  # the price of looking every day
    assert report.verdict == "candidate better (the always-valid interval excludes 0)"
    assert {arm.arm: arm.with_outcome for arm in report.arms} == {"production": 800, "candidate": 900}


def test_ab_says_not_enough_outcomes_below_the_minimum_and_a_constant_arm_keeps_a_width():
    few = ab_report({}, [("production", 0.0)] * 12 + [("candidate", 0.0)] * 9, 30)
    assert few.ci95 is None and few.always_valid95 is None
    assert few.verdict == "not enough outcomes yet: 12 and 9 of 30 an arm"
    # A rare outcome that leaves both arms all 0 still has an interval with a width.
    zeros = ab_report({}, [("production", 0.0)] * 40 + [("candidate", 0.0)] * 40, 30)
    assert zeros.ci95[0] < 0 < zeros.ci95[1] and zeros.always_valid95[0] < 0 < zeros.always_valid95[1]


def test_shadow_report_agreement_correlation_and_latency():
    rows = [(0.1, 0, 1.0, 0.2, 0, 2.0), (0.9, 1, 1.0, 0.8, 1, 2.0), (0.6, 1, 1.0, 0.4, 0, 4.0)]
    report = shadow_report(rows)
    assert report.pairs == 3 and report.agreement == pytest.approx(2 / 3)
    assert report.correlation == pytest.approx(np.corrcoef([0.1, 0.9, 0.6], [0.2, 0.8, 0.4])[0, 1])
    assert report.shadow_p99_ms == 4.0 and report.production_p50_ms == 1.0


# A canary that decides on a test's traffic, on a machine the suite shares: latency is not what these rollouts judge.
QUICK_CANARY = {"min_sample = 200": "min_sample = 60", "max_p99_latency_ratio = 1.5": "max_p99_latency_ratio = 100"}


def _use_canary_spec(home: Home, tmp: Path, **overrides: str) -> None:
    home.add_model(load_spec(small_spec(tmp, **QUICK_CANARY, **overrides)))


def test_canary_steps_up_and_promotes_through_the_registry_with_every_step_audited(home_dir, tmp_path):
    with Home(home_dir) as home:
        d = deployments.start(home, "fraud", "canary", 2)
        assert (d.traffic_percent, d.split_key, d.baseline_version) == (5, "user_id", 1)
        with pytest.raises(Conflict, match="already has a deployment running"):
            deployments.start(home, "fraud", "ab", 2)
        assert [deployments.advance(home, "fraud").traffic_percent for _ in range(2)] == [25, 50]
        assert home.registry.alias("fraud", "production") == 1
        done = deployments.advance(home, "fraud", reason="looks good")
        assert done.status == "completed" and home.registry.alias("fraud", "production") == 2
        actions = [e.action for e in reversed(home.registry.audit_log("fraud", limit=5))]
        assert actions == [
            "deployment_started",
            "canary_advanced",
            "canary_advanced",
            "promote",
            "deployment_completed",
        ]
        with pytest.raises(NotFound, match="no deployment running"):
            deployments.advance(home, "fraud")
        with pytest.raises(Conflict, match="already in production"):
            deployments.start(home, "fraud", "canary", 2)


def test_a_shadow_or_ab_candidate_advances_only_with_evidence_or_a_forced_audited_reason(home_dir):
    with Home(home_dir) as home:
        deployments.start(home, "fraud", "shadow", 2)
        with pytest.raises(
            Conflict,
            match=r"the shadow of v2 has 0 predictions compared with production; it "
            r"needs 200 \(deployment.min_sample\)",
        ):
            deployments.advance(home, "fraud")
        with pytest.raises(InvalidInput, match="a forced advance needs a reason"):
            deployments.advance(home, "fraud", force=True)
        done = deployments.advance(home, "fraud", force=True, reason="replayed last week offline")
        assert done.status == "completed" and home.registry.alias("fraud", "production") == 2
        assert done.reason == "forced: replayed last week offline"
        assert "forced: replayed last week offline" in home.registry.audit_log("fraud", limit=1)[0].detail["reason"]

        deployments.start(home, "fraud", "ab", 1)
        with pytest.raises(Conflict, match=r"the ab of v1 has 0 outcomes on its thinner arm .* it needs 30"):
            deployments.advance(home, "fraud")


def test_blue_green_switches_through_promote_and_abort_switches_back(home_dir):
    with Home(home_dir) as home:
        deployments.start(home, "fraud", "blue-green", 2)
        assert home.registry.alias("fraud", "production") == 1
        switched = deployments.advance(home, "fraud")
        assert switched.switched and home.registry.alias("fraud", "production") == 2
        back = deployments.abort(home, "fraud", reason="errors in the dashboard")
        assert back.status == "rolled_back" and home.registry.alias("fraud", "production") == 1
        assert home.registry.audit_log("fraud", limit=2)[1].action == "rollback"


def _wait_for(predicate, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while not (result := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return result


def _load(url: str, stop: threading.Event, failures: list, versions: set, clients: int = 4) -> list[threading.Thread]:
    def fire(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                record = {**SAMPLE_RECORD, "user_id": f"u{rng.randrange(5000):05d}", "amount": rng.uniform(1, 2000)}
                r = client.post("/v1/models/fraud/predict", json=record)
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions.add(r.json()["version"])

    threads = [threading.Thread(target=fire, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    return threads


def test_a_canary_advances_by_itself_to_production_under_load_without_failing_a_request(server, tmp_path):
    with Home(server.home) as home:
        _use_canary_spec(home, tmp_path, **{"canary_steps = [5, 25, 50, 100]": "canary_steps = [20, 50, 100]"})
        deployments.start(home, "fraud", "canary", 2)
    failures, versions, stop = [], set(), threading.Event()
    threads = _load(server.url, stop, failures, versions)
    try:
        with Home(server.home) as home:
            final = _wait_for(
                lambda: (d := deployments.latest(home, "fraud")).status != "running" and d, "the canary never finished"
            )
            assert final.status == "completed", final.reason
            assert home.registry.alias("fraud", "production") == 2
            audit = [e for e in home.registry.audit_log("fraud", limit=10) if e.actor == "canary-analysis"]
            assert [e.action for e in reversed(audit)] == ["canary_advanced", "promote", "deployment_completed"]
            assert "analysis passed" in audit[-1].detail["reason"]
        _wait_for(lambda: server.client.get("/readyz").json()["serving"] == {"fraud": 2}, "v2 never served")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and versions == {1, 2}


def test_a_retrain_scoring_higher_than_production_as_it_was_evaluated_is_promoted_by_itself(server, tmp_path):
    with Home(server.home) as home:
        # v3 ranks as well as v1 but weighs fraud 30× in training: every score is inflated, as in its evaluation
        # (a candidate answering unlike its own evaluation rolls back: tests/test_canary_answers.py).
        _use_canary_spec(
            home,
            tmp_path,
            **{
                "canary_steps = [5, 25, 50, 100]": "canary_steps = [30, 100]",
                "feature_fraction = 0.9": "feature_fraction = 0.9\nscale_pos_weight = 30",
                "min_recall = 0.30": "min_recall = 0.20",
            },
        )
        outcome = train(home, home.spec("fraud"))
        v3 = outcome.version
        assert v3.status != "rejected", [c for c in outcome.gates.checks if not c.passed]
        deployments.start(home, "fraud", "canary", v3.version)
    failures, stop = [], threading.Event()
    threads = _load(server.url, stop, failures, set(), clients=3)
    try:
        with Home(server.home) as home:
            final = _wait_for(
                lambda: (d := deployments.latest(home, "fraud")).status != "running" and d,
                "the canary was never judged",
            )
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert final.status == "completed" and "against its own evaluation answers" in final.reason, final.reason
    with Home(server.home) as home:
        assert home.registry.alias("fraud", "production") == v3.version
    assert failures == []


def test_shadow_and_ab_reports_and_admin_routes(server):
    with Home(server.home) as home:
        admin = {"authorization": f"Bearer {create_key(home.conn, ['admin'])[1]}"}
    c = server.client
    _wait_for(lambda: c.get("/v1/models/fraud/deployments", headers=admin).status_code == 404, "admin key unseen")
    started = c.post("/v1/models/fraud/deployments", json={"strategy": "shadow", "version": 2}, headers=admin)
    assert started.status_code == 201 and started.json()["strategy"] == "shadow"
    for i in range(20):
        r = c.post("/v1/models/fraud/predict", json={**SAMPLE_RECORD, "amount": 10.0 * i}, headers=admin)
        assert r.status_code == 200 and r.json()["version"] == 1  # only production answers
    report = _wait_for(
        lambda: (b := c.get("/v1/models/fraud/deployments", headers=admin).json())["shadow"]["pairs"] == 20 and b,
        "shadow scores were not logged",
    )
    shadow = report["shadow"]
    assert shadow["agreement"] > 0.9 and shadow["correlation"] > 0.9 and shadow["shadow_p99_ms"] > 0
    early = c.post("/v1/models/fraud/deployments/advance", json={"reason": "looks fine"}, headers=admin)
    assert early.status_code == 409 and "has 20 predictions compared with production" in early.json()["detail"]
    unexplained = c.post("/v1/models/fraud/deployments/advance", json={"force": True}, headers=admin)
    assert unexplained.status_code == 422 and "needs a reason" in unexplained.json()["detail"]
    assert c.post("/v1/models/fraud/deployments/abort", json={}, headers=admin).json()["status"] == "aborted"

    ab = c.post(
        "/v1/models/fraud/deployments", json={"strategy": "ab", "version": 2, "split_key": "user_id"}, headers=admin
    )
    assert ab.status_code == 201, ab.text
    answers = [
        c.post("/v1/models/fraud/predict", json={**SAMPLE_RECORD, "user_id": f"u{i}"}, headers=admin).json()
        for i in range(90)
    ]
    assert {a["version"] for a in answers} == {1, 2}
    again = c.post("/v1/models/fraud/predict", json={**SAMPLE_RECORD, "user_id": "u7"}, headers=admin).json()
    assert again["version"] == answers[7]["version"]  # sticky by the key
    outcomes = [
        {"request_id": a["request_id"], "outcome": float(a["version"] == 2 or i % 3 == 0)}
        for i, a in enumerate(answers)
    ]
    fed = c.post(
        "/v1/models/fraud/feedback", json={"outcomes": outcomes + [{"request_id": "nope", "outcome": 1}]}, headers=admin
    ).json()
    assert fed == {"accepted": 90, "unknown": [{"request_id": "nope", "position": 0}]}
    ab_report_ = c.get("/v1/models/fraud/deployments", headers=admin).json()["ab"]
    assert min(arm["with_outcome"] for arm in ab_report_["arms"]) >= 30  # deployment.ab_min_outcomes: may advance
    low, high = ab_report_["ci95"]
    assert ab_report_["difference"] > 0.5 and low < ab_report_["difference"] < high
    promoted = c.post("/v1/models/fraud/deployments/advance", json={"reason": "B wins"}, headers=admin).json()
    assert promoted["status"] == "completed"
    assert c.post("/v1/models/fraud/rollback", json={"reason": "undo"}, headers=admin).json()["version"] == 1
    assert c.post("/v1/models/fraud/promote", json={"version": 2}, headers=admin).json()["version"] == 2
    with Home(server.home) as home:
        actors = {e.actor for e in home.registry.audit_log("fraud", limit=7)}
    assert actors == {f"api:{admin['authorization'].split('_')[1]}"}

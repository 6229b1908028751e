"""How often the canary's answers rule is wrong: simulated canaries with known truth, judged by the appliance's
own rules (appliance.deployment.canary), the answers compared with each version's own evaluation answers.

Answers are scores sigmoid(N(μ, 1)): the PSI between two such distributions on quantile bins is about the
square of the difference of their μ (a regression's values judge the same way). Production's evaluation
answers are centred at μ = -1.5; the live traffic moves production's answers by ``traffic`` (PSI_p ≈
traffic²). The candidate, a retrain, answers differently from production: its evaluation answers sit 0.55
above production's live ones (PSI ≈ 0.3 between the arms, the demo's retrain: 0.31). Its live answers are
its evaluation answers, moved by the traffic too where its evaluation is as old as production's ("both"), or
not at all where it was evaluated on the newest rows ("newest"); a skewed candidate's live answers are
instead its evaluation answers moved by PSI 0.5 or 1.0, up or down at random. Errors and latency are identical: only
the answers rule can roll back. Each canary runs as the appliance runs it (``canary_power``): the default
steps [5, 25, 50, 100], judged once the candidate has 200 new predictions, on all since it began.

Printed, per traffic shift, candidate's evaluation age and evaluation size:
(a) an identical-behaving retrain (answers differ from production's, not from its evaluation): how often it
    survives the whole canary (goal ≥ 95 %), and under the old rule (its live answers against production's);
(b) a skewed candidate: how often it is rolled back at its first look (200 predictions) and by the end.

    .venv/bin/python scripts/bench/canary_answers.py [--trials 1000] [--seed 1]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.deployment.canary import ArmSample, Evaluated, judge_canary
from appliance.spec import DeploymentSection
from scripts.bench.canary_power import simulation_arguments

STEPS = [5, 25, 50, 100]
MIN_SAMPLE = 200
PRODUCTION_MU = -1.5
RETRAIN_GAP = 0.55  # the candidate's answers above production's, in μ: PSI ≈ 0.3 between the arms


def scores(rng: np.random.Generator, mu: float, n: int) -> list[float]:
    return (1 / (1 + np.exp(-rng.normal(mu, 1.0, n)))).tolist()


def arm(outputs: list[float]) -> ArmSample:
    """An arm whose requests all succeed alike: the errors and latency rules never fire."""
    return ArmSample(outputs, [8.0] * len(outputs), 0)


def canary(
    rng: np.random.Generator, traffic: float, both: bool, skew: float, evaluated_n: int, old_rule: bool = False
) -> int | None:
    """One canary; the candidate's prediction count when it was rolled back, or None if it was promoted.
    ``old_rule``: judged without evaluation answers (the candidate's live answers against production's)."""
    policy = DeploymentSection(canary_steps=STEPS, min_sample=MIN_SAMPLE)
    live_mu = PRODUCTION_MU + traffic + RETRAIN_GAP  # a sound candidate's live answers
    evaluated_mu = live_mu - (traffic if both else 0.0)
    evaluated = Evaluated(scores(rng, PRODUCTION_MU, evaluated_n), scores(rng, evaluated_mu, evaluated_n))
    if skew:
        live_mu = evaluated_mu + skew * rng.choice([-1.0, 1.0])
    production: list[float] = []
    candidate: list[float] = []
    for share in STEPS[:-1]:
        candidate += scores(rng, live_mu, MIN_SAMPLE)
        production += scores(rng, PRODUCTION_MU + traffic, round(MIN_SAMPLE * (100 - share) / share))
        verdict = judge_canary(
            arm(production), arm(candidate), policy, **({} if old_rule else {"evaluated": evaluated})
        )
        if not verdict.passed:
            return len(candidate)
    return None


def main() -> None:
    trials, rng = simulation_arguments(__doc__)
    print(f"canary answers rule, {trials} simulated canaries per cell, steps {STEPS}, min_sample {MIN_SAMPLE}")
    print("(a) identical-behaving retrain survives (goal ≥ 95 %); (b) skewed candidate rolled back: first look / end\n")
    header = f"{'traffic PSI_p':>13} {'evaluated':>9} {'eval rows':>9} {'(a) survives':>13} {'old rule':>9}"
    print(header + "".join(f"{f'(b) skew {s:g}':>20}" for s in (0.5, 1.0)))
    for traffic_psi in (0.0, 0.1, 0.3):
        traffic = float(np.sqrt(traffic_psi))
        for both in (False, True):
            for evaluated_n in (500, 5000):
                survived = sum(canary(rng, traffic, both, 0.0, evaluated_n) is None for _ in range(trials))
                old = sum(canary(rng, traffic, both, 0.0, evaluated_n, old_rule=True) is None for _ in range(trials))
                cells = []
                for skew_psi in (0.5, 1.0):
                    ends = [canary(rng, traffic, both, float(np.sqrt(skew_psi)), evaluated_n) for _ in range(trials)]
                    first = sum(e is not None and e <= MIN_SAMPLE for e in ends) / trials
                    cells.append(f"{first:>9.1%} / {sum(e is not None for e in ends) / trials:>6.1%}")
                age = "both" if both else "newest"
                print(
                    f"{traffic_psi:>13g} {age:>9} {evaluated_n:>9,} {survived / trials:>13.1%} {old / trials:>9.1%}"
                    + "".join(f"{c:>20}" for c in cells)
                )


if __name__ == "__main__":
    main()
